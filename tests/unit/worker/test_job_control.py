"""Leases, capped attempts and the reconciler, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.config import load_settings
from pacs_node.db.base import utcnow
from pacs_node.db.jobs import create_job
from pacs_node.db.leases import (
    JobPolicy,
    claim_job,
    expire_leases,
    fail_attempt,
    finish_running,
    renew_lease,
)
from pacs_node.db.tables import Delivery, Job, Result, Study
from pacs_node.domain import JobState, StudyStatus
from pacs_node.errors import ConfigError
from pacs_node.reconciler import Reconciler
from tests.unit.worker.conftest import RecordingQueue

POLICY = JobPolicy(lease_seconds=10, max_attempts=2, requeue_after_seconds=5)


def new_job(sessions: sessionmaker[Session], state: JobState = JobState.QUEUED) -> int:
    with sessions.begin() as session:
        study = Study(
            study_instance_uid=f"1.2.3.{utcnow().timestamp()}", status=StudyStatus.COMPLETE
        )
        session.add(study)
        session.flush()
        return create_job(session, study_id=study.id, state=state, trigger="forced").id


def job(sessions: sessionmaker[Session], job_id: int) -> Job:
    with sessions() as session:
        found = session.get(Job, job_id)
        assert found is not None
        return found


def test_policy_is_part_of_the_settings() -> None:
    settings = load_settings(
        environ={"PACS_NODE_LEASE_SECONDS": "2.5", "PACS_NODE_MAX_ATTEMPTS": "5", "OTHER": "x"}
    )
    policy = settings.policy
    assert (policy.lease_seconds, policy.max_attempts) == (2.5, 5)
    with pytest.raises(ConfigError, match=r"^PACS_NODE_MAX_ATTEMPTS: must be at least 1"):
        load_settings(environ={"PACS_NODE_MAX_ATTEMPTS": "0"})
    with pytest.raises(ConfigError):
        load_settings(environ={"PACS_NODE_MAX_ATTEMPTS": "many"})
    with pytest.raises(ConfigError):
        JobPolicy(lease_seconds=0)
    backoff = JobPolicy(delivery_backoff_seconds=30, delivery_backoff_max_seconds=3600)
    assert [backoff.delivery_backoff(n).total_seconds() for n in (1, 2, 3, 8, 20)] == [
        30,
        60,
        120,
        3600,
        3600,
    ]


def test_claim_is_exclusive_and_finishing_needs_the_lease(
    sessions: sessionmaker[Session],
) -> None:
    job_id = new_job(sessions)
    with sessions.begin() as session:
        assert claim_job(session, job_id, "worker-a", POLICY)
    with sessions.begin() as session:
        assert not claim_job(session, job_id, "worker-b", POLICY)
    claimed = job(sessions, job_id)
    assert (claimed.state, claimed.attempts, claimed.lease_owner) == ("running", 1, "worker-a")
    with sessions.begin() as session:
        assert not renew_lease(session, job_id, "worker-b", utcnow())
        assert renew_lease(session, job_id, "worker-a", utcnow() + timedelta(seconds=30))
        assert not finish_running(session, job_id, "worker-b", JobState.RESULTS_READY, "no")
        assert finish_running(session, job_id, "worker-a", JobState.RESULTS_READY, "yes")
    done = job(sessions, job_id)
    assert (done.state, done.lease_owner, done.lease_expires_at) == ("results_ready", None, None)


def test_attempts_are_capped(sessions: sessionmaker[Session]) -> None:
    job_id = new_job(sessions)
    for attempt in (1, 2):
        with sessions.begin() as session:
            assert claim_job(session, job_id, "w", POLICY)
        with sessions.begin() as session:
            state = fail_attempt(session, job_id, "w", f"boom {attempt}", POLICY)
        assert state is (JobState.QUEUED if attempt == 1 else JobState.FAILED)
    failed = job(sessions, job_id)
    assert (failed.state, failed.reason, failed.retryable) == ("failed", "boom 2", False)
    with sessions.begin() as session:
        assert fail_attempt(session, job_id, "w", "late", POLICY) is None


def test_reconciler_expires_leases_and_requeues_lost_messages(
    sessions: sessionmaker[Session],
) -> None:
    now = utcnow()
    running, queued, fresh = new_job(sessions), new_job(sessions), new_job(sessions)
    with sessions.begin() as session:
        assert claim_job(session, running, "dead-worker", POLICY, now - timedelta(seconds=60))
        session.get(Job, queued).updated_at = now - timedelta(seconds=60)  # type: ignore[union-attr]
    queue = RecordingQueue()
    report = Reconciler(sessions, queue, POLICY, clock=lambda: now).tick()
    assert report.expired == [running]
    assert report.requeued == [queued]
    assert sorted(queue.analyse) == sorted([running, queued])
    assert fresh not in queue.analyse
    assert job(sessions, running).state == "queued"
    # Woken jobs are left alone until requeue_after has passed again.
    assert Reconciler(sessions, queue, POLICY, clock=lambda: now).tick().requeued == []
    # Out of attempts, an expired lease fails the job.
    with sessions.begin() as session:
        assert claim_job(session, running, "w2", POLICY, now - timedelta(seconds=60))
        assert expire_leases(session, POLICY, now) == []
    assert job(sessions, running).state == "failed"


def test_reconciler_wakes_due_deliveries(sessions: sessionmaker[Session]) -> None:
    now = utcnow()
    due, later = new_job(sessions, JobState.DELIVERING), new_job(sessions, JobState.DELIVERING)
    with sessions.begin() as session:
        for job_id, next_at in (
            (due, now - timedelta(seconds=1)),
            (later, now + timedelta(hours=1)),
        ):
            result = Result(job_id=job_id, kind="sr", path="x", sha256="0", size_bytes=1)
            session.add(result)
            session.flush()
            session.add(
                Delivery(
                    job_id=job_id,
                    result_id=result.id,
                    channel="dicom",
                    destination="PACS@h:1",
                    state="pending",
                    next_attempt_at=next_at,
                )
            )
            session.get(Job, job_id).updated_at = now - timedelta(seconds=60)  # type: ignore[union-attr]
    queue = RecordingQueue()
    Reconciler(sessions, queue, POLICY, clock=lambda: now).tick()
    assert queue.deliver == [due]
    with sessions() as session:
        assert session.scalar(select(Job.updated_at).where(Job.id == due)) is not None
