"""Admin actions on jobs, each written to the append-only audit log in the same transaction.

* retry: a ``failed`` job that has no results yet goes back to ``queued`` (compare-and-set) and
  is enqueued after commit (one that failed sending its results is replayed instead);
* replay: a job's deliveries to one destination go back to ``pending``, due now; a job that had
  finished (``done``, ``skipped`` after its not-analysed report, or ``failed`` on a dead
  delivery) goes back to the stage that sends them (``delivering`` for DICOM, ``notifying`` for
  HL7) and the delivery worker is woken after commit;
* force-complete: a receiving study is completed at the next assembly check.

The session-level functions run in the caller's transaction (the pipeline can reuse them); the
``*_and_*`` helpers own the transaction and are what the API and CLI call.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.assembly import StudyAssembler
from pacs_node.db.base import utcnow
from pacs_node.db.jobs import add_event, transition
from pacs_node.db.tables import AuditLog, Delivery, Job, Result, Study
from pacs_node.dispatch.ledger import Channel, DeliveryState
from pacs_node.domain import JobState
from pacs_node.errors import NodeError
from pacs_node.queue import JobQueue, WorkQueue

LOG = logging.getLogger(__name__)


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


def retry_and_enqueue(
    sessions: sessionmaker[Session],
    queue: JobQueue,
    job_id: int,
    *,
    actor: str,
    remote_address: str | None = None,
) -> None:
    """Retry a failed job in its own transaction and enqueue it after commit.

    Raises:
        JobNotFoundError: if there is no such job.
        ActionRejectedError: if the job is not ``failed``.
    """
    with sessions.begin() as session:
        retry_job(session, job_id, actor=actor, remote_address=remote_address)
    try:
        queue.enqueue(job_id)
    except Exception:
        # The job row is committed as queued: the reconciler re-enqueues it.
        LOG.exception("could not enqueue retried job %d; it stays queued", job_id)


def replay_and_wake(
    sessions: sessionmaker[Session],
    queue: WorkQueue,
    job_id: int,
    destination: str,
    *,
    actor: str,
    remote_address: str | None = None,
) -> int:
    """Replay a job's deliveries to ``destination`` in its own transaction, then wake a worker.

    Raises:
        JobNotFoundError: if there is no such job.
        ActionRejectedError: if the job was superseded or has no delivery to ``destination``.
    """
    with sessions.begin() as session:
        count = replay_deliveries(
            session, job_id, destination, actor=actor, remote_address=remote_address
        )
    try:
        queue.enqueue_delivery(job_id)
    except Exception:
        # The deliveries are committed as due: the reconciler wakes a worker later.
        LOG.exception("could not wake delivery for job %d; the reconciler will", job_id)
    return count


def force_complete_and_audit(
    sessions: sessionmaker[Session],
    assembler: StudyAssembler,
    study_instance_uid: str,
    *,
    actor: str,
    remote_address: str | None = None,
) -> None:
    """Ask the assembler to complete a receiving study, and audit it.

    Raises:
        InvalidIdentifierError: if the UID is malformed.
        StudyIncompleteError: if no such study is receiving.
    """
    assembler.force_complete(study_instance_uid)
    with sessions.begin() as session:
        # Audit rows name the study by its row id; the UID stays in the studies table.
        study_id = session.scalar(
            select(Study.id).where(Study.study_instance_uid == study_instance_uid)
        )
        record_audit(
            session,
            actor=actor,
            action="study.force_complete",
            target=f"study:{study_id}",
            remote_address=remote_address,
        )
