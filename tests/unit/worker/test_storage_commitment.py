"""Deliveries waiting for storage commitment, on SQLite and PostgreSQL: reports settle them,
late outcomes change nothing, the reconciler times them out, the stage waits for them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.config import Settings, load_settings
from pacs_node.db.base import utcnow
from pacs_node.db.deliveries import (
    apply_commitment_report,
    claim_delivery,
    mark_committing,
    record_attempt,
)
from pacs_node.db.tables import Delivery, Job, JobEvent, Result
from pacs_node.destinations import Destination
from pacs_node.domain import DeliveryState, JobState
from pacs_node.errors import ConfigError
from pacs_node.policy import JobPolicy
from pacs_node.reconciler import Reconciler
from pacs_node.spool import Spool
from tests.unit.worker.conftest import RecordingQueue
from tests.unit.worker.test_job_control import new_job
from worker.delivery import DeliveryStage

POLICY = JobPolicy(delivery_max_attempts=2, commitment_timeout_seconds=60)
TRANSACTION = "1.2.3.9"


def claimed_deliveries(sessions: sessionmaker[Session], job_id: int, count: int = 2) -> list[int]:
    """``count`` SEG deliveries of ``job_id`` to PACS, claimed for a first attempt."""
    ids = []
    with sessions.begin() as session:
        for index in range(count):
            result = Result(
                job_id=job_id,
                kind="seg",
                sop_instance_uid=f"1.2.3.{job_id}.{index}",
                path="x",
                sha256="0",
                size_bytes=1,
            )
            session.add(result)
            session.flush()
            delivery = Delivery(
                job_id=job_id, result_id=result.id, channel="dicom", destination="PACS"
            )
            delivery.state, delivery.attempts = DeliveryState.PENDING.value, 0
            session.add(delivery)
            session.flush()
            ids.append(delivery.id)
    for delivery_id in ids:
        with sessions.begin() as session:
            assert claim_delivery(session, delivery_id, POLICY)
    return ids


def committing(sessions: sessionmaker[Session], job_id: int) -> list[str]:
    """Claim two deliveries and record their commitment request; returns their SOP UIDs."""
    claimed_deliveries(sessions, job_id)
    uids = [f"1.2.3.{job_id}.0", f"1.2.3.{job_id}.1"]
    with sessions.begin() as session:
        assert len(mark_committing(session, "PACS", TRANSACTION, uids)) == 2
    return uids


def states(sessions: sessionmaker[Session], job_id: int) -> list[tuple[str, int, str | None]]:
    with sessions() as session:
        rows = session.execute(
            select(Delivery.state, Delivery.attempts, Delivery.last_error)
            .where(Delivery.job_id == job_id)
            .order_by(Delivery.id)
        ).all()
    return [(r.state, r.attempts, r.last_error) for r in rows]


def events(sessions: sessionmaker[Session], job_id: int) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(JobEvent.message).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
            )
        )


def test_the_commitment_timeout_is_a_validated_setting() -> None:
    settings = load_settings(environ={"PACS_NODE_COMMITMENT_TIMEOUT_SECONDS": "12.5"})
    assert settings.policy.commitment_timeout_seconds == 12.5
    assert JobPolicy().commitment_timeout_seconds == 300
    with pytest.raises(ConfigError, match=r"^PACS_NODE_COMMITMENT_TIMEOUT_SECONDS"):
        load_settings(environ={"PACS_NODE_COMMITMENT_TIMEOUT_SECONDS": "0"})


def test_a_report_settles_what_it_names(sessions: sessionmaker[Session]) -> None:
    job_id = new_job(sessions, JobState.DELIVERING)
    uids = committing(sessions, job_id)
    assert states(sessions, job_id) == [("committing", 1, None)] * 2
    with sessions.begin() as session:
        assert (
            apply_commitment_report(
                session, "1.2.3.other", committed=uids, failed={}, policy=POLICY
            )
            == []
        )
        settled = apply_commitment_report(
            session, TRANSACTION, committed=uids[:1], failed={uids[1]: 0x0112}, policy=POLICY
        )
    assert settled == [job_id, job_id]
    failure = "storage commitment failed: 0x0112"
    assert states(sessions, job_id) == [("sent", 1, None), ("pending", 1, failure)]
    with sessions() as session:
        retry = session.scalars(select(Delivery).order_by(Delivery.id)).all()[1]
        assert retry.next_attempt_at is not None and retry.next_attempt_at > utcnow()
    assert events(sessions, job_id)[-3:] == [
        "storage commitment requested from PACS: 2 objects",
        "storage commitment from PACS: 1 objects committed",
        f"{failure} (PACS, 1 objects)",
    ]


def test_an_outcome_recorded_after_the_report_changes_nothing(
    sessions: sessionmaker[Session],
) -> None:
    """The report may come back (to the SCP) before the stage records the attempt."""
    job_id = new_job(sessions, JobState.DELIVERING)
    uids = committing(sessions, job_id)
    ids = claimed_ids(sessions, job_id)
    with sessions.begin() as session:
        apply_commitment_report(
            session, TRANSACTION, committed=uids[:1], failed={uids[1]: 0x0110}, policy=POLICY
        )
        for delivery_id in ids:
            record_attempt(
                session,
                delivery_id,
                delivered=True,
                status="0x0000",
                error=None,
                policy=POLICY,
                commitment_uid=TRANSACTION,
            )
    assert [s for s, _, _ in states(sessions, job_id)] == ["sent", "pending"]


def test_a_failed_request_or_an_unanswered_one_fails_the_attempt(
    sessions: sessionmaker[Session],
) -> None:
    job_id = new_job(sessions, JobState.DELIVERING)
    committing(sessions, job_id)
    first, second = claimed_ids(sessions, job_id)
    with sessions.begin() as session:
        refused = record_attempt(
            session,
            first,
            delivered=False,
            status="0x0110",
            error="storage commitment request refused by peer",
            policy=POLICY,
        )
        waiting = record_attempt(
            session,
            second,
            delivered=True,
            status="0x0000",
            error=None,
            policy=POLICY,
            commitment_uid=TRANSACTION,
        )
    assert (refused, waiting) == (DeliveryState.PENDING, DeliveryState.COMMITTING)


def claimed_ids(sessions: sessionmaker[Session], job_id: int) -> list[int]:
    with sessions() as session:
        return list(
            session.scalars(
                select(Delivery.id).where(Delivery.job_id == job_id).order_by(Delivery.id)
            )
        )


def test_the_reconciler_times_out_commitments_and_wakes_their_jobs(
    sessions: sessionmaker[Session],
) -> None:
    job_id = new_job(sessions, JobState.DELIVERING)
    committing(sessions, job_id)
    queue = RecordingQueue()
    now = utcnow()
    assert Reconciler(sessions, queue, POLICY, clock=lambda: now).tick().commitments_expired == []
    later = now + timedelta(seconds=61)
    report = Reconciler(sessions, queue, POLICY, clock=lambda: later).tick()
    assert report.commitments_expired == [job_id] and queue.deliver == [job_id]
    timeout = "no storage commitment within 60 s"
    assert states(sessions, job_id) == [("pending", 1, timeout)] * 2
    assert events(sessions, job_id)[-1] == f"{timeout} (PACS, 2 objects)"
    # The second attempt is the last: unanswered, it is dead-lettered.
    for delivery_id in claimed_ids(sessions, job_id):
        with sessions.begin() as session:
            assert claim_delivery(session, delivery_id, POLICY, later + timedelta(hours=2))
    with sessions.begin() as session:
        mark_committing(session, "PACS", "1.2.3.10", [f"1.2.3.{job_id}.0", f"1.2.3.{job_id}.1"])
    Reconciler(sessions, queue, POLICY, clock=lambda: later + timedelta(hours=3)).tick()
    assert states(sessions, job_id) == [("dead", 2, timeout)] * 2


def test_the_delivering_stage_waits_for_commitment(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    job_id = new_job(sessions, JobState.DELIVERING)
    uids = committing(sessions, job_id)
    settings = Settings(
        spool_dir=tmp_path / "spool",
        destinations=(Destination.parse_dicom("PACS@127.0.0.1:104/commit"),),
        policy=POLICY,
    )
    stage = DeliveryStage(settings, sessions, Spool(settings.spool_dir))
    assert stage.run(job_id) is JobState.DELIVERING
    with sessions.begin() as session:
        apply_commitment_report(session, TRANSACTION, committed=uids, failed={}, policy=POLICY)
    assert stage.run(job_id) is JobState.DONE
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.reason is None


def test_the_reconciler_wakes_a_job_whose_report_wake_up_was_lost(
    sessions: sessionmaker[Session],
) -> None:
    job_id = new_job(sessions, JobState.DELIVERING)
    uids = committing(sessions, job_id)
    now = utcnow()
    with sessions.begin() as session:
        session.get(Job, job_id).updated_at = now - timedelta(seconds=60)  # type: ignore[union-attr]
    queue = RecordingQueue()
    Reconciler(sessions, queue, POLICY, clock=lambda: now).tick()
    assert queue.deliver == []  # still committing: the report, or the timeout, comes first
    with sessions.begin() as session:
        apply_commitment_report(session, TRANSACTION, committed=uids, failed={}, policy=POLICY)
    Reconciler(sessions, queue, POLICY, clock=lambda: now).tick()
    assert queue.deliver == [job_id]
