"""Admin actions on jobs in the caller's transaction, each written to the append-only audit log.

* retry: a ``failed`` job that has no results yet goes back to ``queued`` (compare-and-set);
* replay: a job's deliveries to one destination (by name) go back to ``pending``, due now; a job
  that had finished (``done``, ``skipped`` after its not-analysed report, or ``failed`` on a dead
  delivery) goes back to the stage that sends them (``delivering`` for DICOM, ``notifying`` for
  HL7).

:mod:`pacs_node.admin` owns the transactions and wakes the workers after commit; it is what the
API and CLI call.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from pacs_node.db.base import utcnow
from pacs_node.db.jobs import add_event, transition
from pacs_node.db.tables import AuditLog, Delivery, Job, Result
from pacs_node.domain import Channel, DeliveryState, JobState
from pacs_node.errors import NodeError


class JobNotFoundError(NodeError, LookupError):
    """No job has the given id."""


class ActionRejectedError(NodeError):
    """The action does not apply to the job in its current state; nothing was changed."""


def record_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str | None,
    remote_address: str | None,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    """Append an audit entry (in the caller's transaction).

    ``details`` must not carry patient data (names, IDs, UIDs): refer to rows by id.
    """
    entry = AuditLog(
        actor=actor[:64],
        action=action,
        target=target,
        remote_address=remote_address,
        details=details or {},
    )
    session.add(entry)
    return entry


def _job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise JobNotFoundError(f"no job {job_id}")
    return job


def retry_job(session: Session, job_id: int, *, actor: str, remote_address: str | None) -> None:
    """Put a failed job back in ``queued`` with its attempts reset (caller commits, then enqueues).

    Raises:
        JobNotFoundError: if there is no such job.
        ActionRejectedError: if the job is not ``failed`` (or changed state meanwhile), or it
            already has results (it failed sending them: analysing it again would store objects
            with the same identities, so they are replayed instead).
    """
    job = _job(session, job_id)
    has_results = select(func.count()).select_from(Result).where(Result.job_id == job_id)
    if job.state == JobState.FAILED and session.scalar(has_results):
        raise ActionRejectedError(
            f"job {job_id} already has its results (sending them failed): replay them instead"
        )
    previous_reason = job.reason
    moved = transition(
        session,
        job_id,
        JobState.FAILED,
        JobState.QUEUED,
        f"retry requested by {actor}",
        reason=None,
        retryable=False,
        attempts=0,
        lease_owner=None,
        lease_expires_at=None,
    )
    if not moved:
        raise ActionRejectedError(f"job {job_id} is {job.state}, only a failed job can be retried")
    record_audit(
        session,
        actor=actor,
        action="job.retry",
        target=f"job:{job_id}",
        remote_address=remote_address,
        details={"previous_reason": previous_reason},
    )


REOPENED_STATES = (JobState.DONE, JobState.SKIPPED, JobState.FAILED, JobState.NOTIFYING)
"""States a replay moves back to the sending stage (others are already on their way there)."""


def replay_deliveries(
    session: Session, job_id: int, destination: str, *, actor: str, remote_address: str | None
) -> int:
    """Reset a job's deliveries to ``destination`` to ``pending``, due now; return how many.

    A ``done``, ``skipped`` or ``failed`` job (or one notifying when DICOM is replayed) moves back
    to the stage that sends them, compare-and-set; the caller commits, then wakes a delivery
    worker.

    Raises:
        JobNotFoundError: if there is no such job.
        ActionRejectedError: if the job was superseded or has no delivery to ``destination``.
    """
    job = _job(session, job_id)
    if job.state == JobState.SUPERSEDED:
        raise ActionRejectedError(f"job {job_id} was superseded; replay its successor instead")
    channels = set(
        session.scalars(
            select(Delivery.channel).where(
                Delivery.job_id == job_id, Delivery.destination == destination
            )
        )
    )
    if not channels:
        known = session.scalars(
            select(Delivery.destination).where(Delivery.job_id == job_id).distinct()
        ).all()
        have = ", ".join(known) or "none"
        raise ActionRejectedError(f"job {job_id} has no delivery to {destination!r} (has: {have})")
    reset = session.execute(
        update(Delivery)
        .where(Delivery.job_id == job_id, Delivery.destination == destination)
        .values(
            state=DeliveryState.PENDING.value,
            attempts=0,
            next_attempt_at=utcnow(),
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    message = f"replay to {destination} requested by {actor}"
    stage = JobState.DELIVERING if Channel.DICOM.value in channels else JobState.NOTIFYING
    current = JobState(job.state)
    if current in REOPENED_STATES and current is not stage:
        reopened = transition(
            session,
            job_id,
            current,
            stage,
            message,
            {"deliveries": reset},
            reason=None,
            retryable=False,
        )
        if not reopened:
            raise ActionRejectedError(f"job {job_id} changed state meanwhile; try again")
    else:
        add_event(session, job, message, {"deliveries": reset})
    record_audit(
        session,
        actor=actor,
        action="job.replay",
        target=f"job:{job_id}",
        remote_address=remote_address,
        details={"destination": destination, "deliveries": reset},
    )
    return int(reset)
