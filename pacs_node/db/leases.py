"""Job control: a worker takes a job under a lease; attempts are capped; leases expire.

A worker claims a ``queued`` job (``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, then a
compare-and-set to ``running``), renews its lease while it works, and finishes with a
compare-and-set that also checks it still holds the lease. A job whose lease expired (a worker
killed, a hung model) is returned to ``queued`` by the reconciler, or ends ``failed`` once it has
used its attempts, so a poison study cannot block the queue.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pacs_node.db.base import utcnow
from pacs_node.db.jobs import transition
from pacs_node.db.tables import Job, JobEvent
from pacs_node.domain import JobState
from pacs_node.policy import JobPolicy


def claim_job(
    session: Session, job_id: int, owner: str, policy: JobPolicy, now: datetime | None = None
) -> bool:
    """Take a ``queued`` job: ``running``, leased to ``owner``, one more attempt counted.

    A job that has already used all its attempts ends ``failed`` instead. Runs in the caller's
    transaction; commit it before doing the work.

    Returns:
        True when the caller now holds the job; False when it is not queued, another worker has
        it locked, or it has just been failed for too many attempts.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    now = now or utcnow()
    job = session.scalar(
        select(Job)
        .where(Job.id == job_id, Job.state == JobState.QUEUED.value)
        # PostgreSQL: skip a row another worker is claiming; SQLite ignores it (single writer).
        .with_for_update(skip_locked=True)
    )
    if job is None:
        return False
    if job.attempts >= policy.max_attempts:
        transition(
            session,
            job_id,
            JobState.QUEUED,
            JobState.FAILED,
            f"failed after {job.attempts} attempts",
            reason=job.reason or f"failed after {job.attempts} attempts",
            retryable=False,
        )
        return False
    return transition(
        session,
        job_id,
        JobState.QUEUED,
        JobState.RUNNING,
        f"attempt {job.attempts + 1} started by {owner}",
        lease_owner=owner,
        lease_expires_at=now + timedelta(seconds=policy.lease_seconds),
        attempts=job.attempts + 1,
        timeout_seconds=int(policy.job_timeout_seconds),
    )


def renew_lease(session: Session, job_id: int, owner: str, until: datetime) -> bool:
    """Extend ``owner``'s lease on a running job to ``until``.

    Returns:
        False when the job is no longer running under that owner (the lease was lost).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING.value, Job.lease_owner == owner)
        .values(lease_expires_at=until)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def finish_running(
    session: Session,
    job_id: int,
    owner: str,
    new: JobState,
    message: str,
    details: dict[str, Any] | None = None,
    **values: Any,
) -> bool:
    """Leave ``running`` for ``new`` if ``owner`` still holds the lease; the lease is cleared.

    ``details`` go into the event; ``values`` are further job columns to set.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING.value, Job.lease_owner == owner)
        .values(
            state=new.value,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=utcnow(),
            **values,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(JobEvent(job_id=job_id, state=new.value, message=message, details=details or {}))
    return True


def fail_attempt(
    session: Session, job_id: int, owner: str, reason: str, policy: JobPolicy
) -> JobState | None:
    """End a failed attempt: back to ``queued``, or ``failed`` when the attempts are used up.

    Returns:
        The job's new state, or None if ``owner`` no longer held it (nothing written).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    attempts = session.scalar(select(Job.attempts).where(Job.id == job_id))
    if attempts is None:
        return None
    if attempts >= policy.max_attempts:
        new, message = JobState.FAILED, f"attempt {attempts} failed; no attempts left: {reason}"
    else:
        new, message = JobState.QUEUED, f"attempt {attempts} failed; will retry: {reason}"
    retryable = new is JobState.QUEUED
    if not finish_running(session, job_id, owner, new, message, reason=reason, retryable=retryable):
        return None
    return new


def expire_leases(session: Session, policy: JobPolicy, now: datetime | None = None) -> list[int]:
    """Return running jobs whose lease expired to ``queued`` (or ``failed`` when out of attempts).

    Returns:
        The IDs of the jobs now queued again (to be enqueued after commit).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    now = now or utcnow()
    expired = session.execute(
        select(Job.id, Job.lease_owner).where(
            Job.state == JobState.RUNNING.value, Job.lease_expires_at < now
        )
    ).all()
    requeued = []
    for job_id, owner in expired:
        if owner is None:
            continue
        reason = f"lease of {owner} expired (worker lost or job over its time limit)"
        state = fail_attempt(session, job_id, owner, reason, policy)
        if state is JobState.QUEUED:
            requeued.append(job_id)
    return requeued
