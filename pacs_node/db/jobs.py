"""Service functions for jobs: creation, compare-and-set transitions, and the event log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from pacs_node.db.base import utcnow
from pacs_node.db.tables import Job, JobEvent
from pacs_node.domain import JobState

REVIEW_REASON_SEPARATOR = "\n"
"""Between the reasons in ``jobs.review_reasons`` (each reason is one printable line)."""


def review_columns(needs_review: bool, reasons: Sequence[str]) -> dict[str, Any]:
    """The job columns of the model's quality check, as ``values`` of a transition."""
    return {
        "needs_review": needs_review,
        "review_reasons": REVIEW_REASON_SEPARATOR.join(reasons) or None,
    }


def review_reasons(column: str | None) -> tuple[str, ...]:
    """The reasons stored by :func:`review_columns` (none for a null column)."""
    return tuple(column.split(REVIEW_REASON_SEPARATOR)) if column else ()


def add_event(
    session: Session, job: Job, message: str, details: dict[str, Any] | None = None
) -> JobEvent:
    """Append an event to a job's timeline (in the caller's transaction)."""
    event = JobEvent(job=job, state=job.state, message=message, details=details or {})
    session.add(event)
    return event


def create_job(
    session: Session,
    *,
    study_id: int,
    state: JobState,
    trigger: str | None,
    skip_reason: str | None = None,
    requested_by: str | None = None,
) -> Job:
    """Create the next version of a study's job, superseding the previous one.

    The previous latest job (whatever its state, unless already superseded) is marked
    ``superseded``: its results are replaced by this job's. A ``skip_reason`` marks a study out
    of intended use: the job reports that reason instead of running the model, then ends
    ``skipped``. ``requested_by`` names who asked for a study retrieved on demand.
    """
    previous = session.scalar(
        select(Job).where(Job.study_id == study_id).order_by(Job.version.desc()).limit(1)
    )
    version = 1 if previous is None else previous.version + 1
    job = Job(
        study_id=study_id,
        version=version,
        state=state,
        trigger=trigger,
        skip_reason=skip_reason,
        requested_by=requested_by,
        supersedes_job_id=previous.id if previous is not None else None,
    )
    session.add(job)
    session.flush()
    if previous is not None and previous.state != JobState.SUPERSEDED:
        previous.state = JobState.SUPERSEDED
        add_event(session, previous, f"superseded by job {job.id} (version {version})")
    add_event(
        session,
        job,
        f"job created: {state.value}" + (f" (not analysed: {skip_reason})" if skip_reason else ""),
        {"trigger": trigger, "version": version},
    )
    return job


def transition(
    session: Session,
    job_id: int,
    expected: JobState,
    new: JobState,
    message: str,
    details: dict[str, Any] | None = None,
    **values: Any,
) -> bool:
    """Move a job from ``expected`` to ``new`` if (and only if) it is still in ``expected``.

    ``details`` go into the event; ``values`` are further job columns to set.
    Returns False when another actor changed the job first; nothing is written then.
    """
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == expected.value)
        .values(state=new.value, updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(JobEvent(job_id=job_id, state=new.value, message=message, details=details or {}))
    return True


def job_state(session: Session, job_id: int) -> JobState | None:
    """The job's state (None if there is no such job)."""
    state = session.scalar(select(Job.state).where(Job.id == job_id))
    return None if state is None else JobState(state)


def count_by_state(session: Session) -> dict[str, int]:
    """Number of jobs in each state."""
    rows = session.execute(select(Job.state, func.count()).group_by(Job.state))
    return {state: int(count) for state, count in rows}
