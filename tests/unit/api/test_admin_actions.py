"""Retry, replay, force-complete: compare-and-set, audit, enqueue after commit, no half-changes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from pacs_node import admin
from pacs_node.assembly import StudyAssembler
from pacs_node.db import admin_actions
from pacs_node.db.base import utcnow
from pacs_node.db.tables import AuditLog, Delivery, Job, JobEvent, Study
from pacs_node.domain import JobState, StudyStatus
from pacs_node.errors import StudyIncompleteError
from pacs_node.selection import load_rules
from tests.unit.api.conftest import RecordingQueue
from tests.unit.api.seed import DESTINATION, HL7, T0, add_job, add_outputs, add_study


def snapshot(session: Session) -> tuple[object, ...]:
    """Everything an admin action may touch."""
    return (
        session.execute(select(Job.id, Job.state, Job.attempts, Job.reason).order_by(Job.id)).all(),
        session.scalar(select(func.count()).select_from(JobEvent)),
        session.scalar(select(func.count()).select_from(AuditLog)),
        session.execute(
            select(Delivery.id, Delivery.state, Delivery.attempts).order_by(Delivery.id)
        ).all(),
    )


def make_job(sessions: sessionmaker[Session], state: JobState, *, outputs: bool = True) -> int:
    with sessions.begin() as session:
        job = add_job(session, add_study(session, 1), state, created=T0, reason="model crashed")
        job.attempts = 3
        job.retryable = True
        if outputs:
            add_outputs(session, job)
        return job.id


def test_retry_requeues_a_failed_job_after_commit_and_audits(
    sessions: sessionmaker[Session],
) -> None:
    job_id = make_job(sessions, JobState.FAILED, outputs=False)
    queue = RecordingQueue(sessions)
    admin.retry_and_enqueue(sessions, queue, job_id, actor="alice", remote_address="10.1.1.1")
    assert queue.enqueued == [(job_id, "queued")]  # the queued state was committed first
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.state, job.attempts, job.reason, job.retryable) == ("queued", 0, None, False)
        events = session.scalars(select(JobEvent.message).where(JobEvent.job_id == job_id)).all()
        assert events[-1] == "retry requested by alice"
        audit = session.scalars(select(AuditLog)).one()
    assert (audit.actor, audit.action, audit.target, audit.remote_address) == (
        "alice",
        "job.retry",
        f"job:{job_id}",
        "10.1.1.1",
    )
    assert audit.details == {"previous_reason": "model crashed"}


@pytest.mark.parametrize("state", [JobState.DONE, JobState.RUNNING, JobState.QUEUED])
def test_retry_of_a_job_that_has_not_failed_changes_nothing(
    sessions: sessionmaker[Session], state: JobState
) -> None:
    job_id = make_job(sessions, state)
    queue = RecordingQueue(sessions)
    with sessions() as session:
        before = snapshot(session)
    with pytest.raises(admin_actions.ActionRejectedError, match="only a failed job"):
        admin.retry_and_enqueue(sessions, queue, job_id, actor="alice")
    with pytest.raises(admin_actions.JobNotFoundError):
        admin.retry_and_enqueue(sessions, queue, job_id + 99, actor="alice")
    with sessions() as session:
        assert snapshot(session) == before
    assert queue.enqueued == []


def test_retry_of_a_job_that_failed_sending_its_results_points_to_replay(
    sessions: sessionmaker[Session],
) -> None:
    job_id = make_job(sessions, JobState.FAILED)
    queue = RecordingQueue(sessions)
    with sessions() as session:
        before = snapshot(session)
    with pytest.raises(admin_actions.ActionRejectedError, match="replay them instead"):
        admin.retry_and_enqueue(sessions, queue, job_id, actor="alice")
    with sessions() as session:
        assert snapshot(session) == before
    assert queue.enqueued == []


def test_actions_survive_a_broker_outage(sessions: sessionmaker[Session]) -> None:
    class DownQueue:
        def enqueue(self, job_id: int) -> None:
            raise ConnectionError("broker down")

        def enqueue_delivery(self, job_id: int) -> None:
            raise ConnectionError("broker down")

    job_id = make_job(sessions, JobState.FAILED, outputs=False)
    admin.retry_and_enqueue(sessions, DownQueue(), job_id, actor="alice")
    with sessions.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.state == "queued"
        add_outputs(session, job)
    admin.replay_and_wake(sessions, DownQueue(), job_id, DESTINATION, actor="alice")
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditLog)) == 2


@pytest.mark.parametrize("finished", [JobState.DONE, JobState.SKIPPED])
def test_replay_resets_only_that_destination_and_reopens_a_finished_job(
    sessions: sessionmaker[Session], finished: JobState
) -> None:
    job_id = make_job(sessions, finished)
    queue = RecordingQueue(sessions)
    before = utcnow()
    count = admin.replay_and_wake(
        sessions, queue, job_id, DESTINATION, actor="bob", remote_address="10.0.0.2"
    )
    assert count == 1
    assert queue.delivery_woken == [(job_id, "delivering")]  # woken after commit
    with sessions() as session:
        rows = {d.destination: d for d in session.scalars(select(Delivery))}
        replayed = rows[DESTINATION]
        assert (replayed.state, replayed.attempts) == ("pending", 0)
        assert replayed.next_attempt_at is not None
        assert before - timedelta(seconds=1) <= replayed.next_attempt_at <= utcnow()
        assert rows["ARCHIVE"].state == "dead"
        events = session.scalars(select(JobEvent).order_by(JobEvent.id)).all()
        assert (events[-1].state, events[-1].message) == (
            "delivering",
            f"replay to {DESTINATION} requested by bob",
        )
        audit = session.scalars(select(AuditLog)).one()
        assert (audit.action, audit.remote_address, audit.details) == (
            "job.replay",
            "10.0.0.2",
            {"destination": DESTINATION, "deliveries": 1},
        )


def test_replay_of_a_dead_hl7_delivery_reopens_a_failed_job_for_notification(
    sessions: sessionmaker[Session],
) -> None:
    job_id = make_job(sessions, JobState.FAILED)
    queue = RecordingQueue(sessions)
    admin.replay_and_wake(sessions, queue, job_id, HL7, actor="bob")
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.state, job.reason, job.retryable) == ("notifying", None, False)


def test_replay_of_a_job_on_its_way_leaves_its_state(sessions: sessionmaker[Session]) -> None:
    job_id = make_job(sessions, JobState.DELIVERING)
    admin.replay_and_wake(sessions, RecordingQueue(sessions), job_id, HL7, actor="bob")
    with sessions() as session:
        assert session.get(Job, job_id).state == "delivering"  # type: ignore[union-attr]


def test_replay_rejections_change_nothing(sessions: sessionmaker[Session]) -> None:
    job_id = make_job(sessions, JobState.DONE)
    with sessions.begin() as session:
        old = add_job(session, add_study(session, 2), JobState.SUPERSEDED, created=T0)
        add_outputs(session, old)
        old_id = old.id
    with sessions() as session:
        before = snapshot(session)
    queue = RecordingQueue(sessions)
    with pytest.raises(admin_actions.ActionRejectedError, match="has no delivery"):
        admin.replay_and_wake(sessions, queue, job_id, "NOPE", actor="bob")
    with pytest.raises(admin_actions.ActionRejectedError, match="superseded"):
        admin.replay_and_wake(sessions, queue, old_id, DESTINATION, actor="bob")
    with pytest.raises(admin_actions.JobNotFoundError):
        admin.replay_and_wake(sessions, queue, 10_000, DESTINATION, actor="bob")
    with sessions() as session:
        assert snapshot(session) == before
    assert queue.delivery_woken == []


def test_force_complete_is_audited_by_study_row_not_uid(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        study = add_study(session, 3)
        study.status = StudyStatus.RECEIVING.value
        study_id, uid = study.id, study.study_instance_uid
    assembler = StudyAssembler(
        sessions,
        load_rules(None),
        RecordingQueue(sessions),
        quiet_seconds=3600,
        release_grace_seconds=3600,
    )
    admin.force_complete_and_audit(sessions, assembler, uid, actor="carol")
    with sessions() as session:
        assert session.get(Study, study_id).force_complete is True  # type: ignore[union-attr]
        audit = session.scalars(select(AuditLog)).one()
        assert (audit.action, audit.target) == ("study.force_complete", f"study:{study_id}")
    with pytest.raises(StudyIncompleteError):
        admin.force_complete_and_audit(
            sessions, assembler, "1.2.826.0.1.3680043.10.1439.9.404", actor="carol"
        )
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditLog)) == 1
