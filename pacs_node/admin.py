"""Admin actions as the API and CLI run them: each in its own transaction, audited, with the
worker woken after commit.

* retry: a ``failed`` job that has no results yet goes back to ``queued`` and is enqueued;
* replay: a job's deliveries to one destination are due again and a delivery worker is woken;
* force-complete: a receiving study is completed at the next assembly check.

A broker that is down never undoes an action: the rows are committed and the reconciler sends the
message later.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.assembly import StudyAssembler
from pacs_node.db.admin_actions import record_audit, replay_deliveries, retry_job
from pacs_node.db.tables import Study
from pacs_node.queue import JobQueue, WorkQueue

LOG = logging.getLogger(__name__)


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
