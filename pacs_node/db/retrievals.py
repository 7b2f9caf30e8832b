"""Retrievals: each study the node asked a source for, its progress and the job it became."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from pacs_node.db.base import utcnow
from pacs_node.db.tables import Retrieval
from pacs_node.domain import RetrievalPurpose, RetrievalState


@dataclass(frozen=True)
class RetrievalInfo:
    """A retrieval as the API and CLI show it (no patient data: the study is referred to by the
    job it became)."""

    id: int
    source: str
    purpose: str
    requested_by: str
    state: str
    completed: int
    failed: int
    warning: int
    status: str | None
    reason: str | None
    job_id: int | None
    for_job_id: int | None
    requested_at: datetime
    finished_at: datetime | None


def start_retrieval(
    session: Session,
    *,
    source: str,
    study_instance_uid: str,
    purpose: RetrievalPurpose,
    requested_by: str,
    for_job_id: int | None = None,
) -> Retrieval:
    """Record that the node is fetching a study (in the caller's transaction)."""
    retrieval = Retrieval(
        source=source,
        study_instance_uid=study_instance_uid,
        purpose=purpose.value,
        requested_by=requested_by[:64],
        for_job_id=for_job_id,
        state=RetrievalState.RETRIEVING.value,
        completed=0,
        failed=0,
        warning=0,
    )
    session.add(retrieval)
    session.flush()
    return retrieval


def finish_retrieval(
    session: Session,
    retrieval_id: int,
    *,
    state: RetrievalState,
    counts: tuple[int, int, int],
    status: str | None,
    reason: str | None,
) -> None:
    """Record how a retrieval ended: its state, the (completed, failed, warning) sub-operation
    counts, the final DIMSE status and why it failed.

    Raises:
        LookupError: if there is no such retrieval.
    """
    retrieval = session.get(Retrieval, retrieval_id)
    if retrieval is None:
        raise LookupError(f"no retrieval {retrieval_id}")
    retrieval.state = state.value
    retrieval.completed, retrieval.failed, retrieval.warning = counts
    retrieval.status = status
    retrieval.reason = reason
    retrieval.finished_at = utcnow()


def awaited_retrieval(session: Session, study_instance_uid: str) -> Retrieval | None:
    """The latest retrieval of a study that has not become a job yet (None if there is none):
    the study's completion turns it into the job's trigger and requester."""
    return session.scalar(
        select(Retrieval)
        .where(
            Retrieval.study_instance_uid == study_instance_uid,
            Retrieval.job_id.is_(None),
            Retrieval.state != RetrievalState.FAILED.value,
        )
        .order_by(Retrieval.id.desc())
        .limit(1)
    )


def get_retrieval(session: Session, retrieval_id: int) -> RetrievalInfo | None:
    """One retrieval (None if there is none by that id)."""
    retrieval = session.get(Retrieval, retrieval_id)
    return None if retrieval is None else _info(retrieval)


def recent_retrievals(session: Session, limit: int = 50) -> list[RetrievalInfo]:
    """The latest retrievals, newest first."""
    rows = session.scalars(select(Retrieval).order_by(Retrieval.id.desc()).limit(limit))
    return [_info(row) for row in rows]


def _info(row: Retrieval) -> RetrievalInfo:
    return RetrievalInfo(
        id=row.id,
        source=row.source,
        purpose=row.purpose,
        requested_by=row.requested_by,
        state=row.state,
        completed=row.completed,
        failed=row.failed,
        warning=row.warning,
        status=row.status,
        reason=row.reason,
        job_id=row.job_id,
        for_job_id=row.for_job_id,
        requested_at=row.requested_at,
        finished_at=row.finished_at,
    )
