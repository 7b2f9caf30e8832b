"""Result rows: each object a job produced, with its fixed identity and its file in the spool;
and a study's latest analysis report (what a later study is compared with)."""

from __future__ import annotations

import hashlib
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from pacs_node.db.tables import Job, Result, Study
from pacs_node.domain import JobState, ResultKind


class EncodedObject(Protocol):
    """An encoded result as the pipeline makes it: what it is, its identity and its bytes."""

    @property
    def kind(self) -> ResultKind:
        """What it is."""

    @property
    def data(self) -> bytes:
        """The encoded bytes."""

    @property
    def sop_class_uid(self) -> str | None:
        """SOP Class UID of a DICOM object."""

    @property
    def series_instance_uid(self) -> str | None:
        """Series Instance UID of a DICOM object."""

    @property
    def sop_instance_uid(self) -> str | None:
        """SOP Instance UID of a DICOM object."""

    @property
    def control_id(self) -> str | None:
        """MSH-10 of an HL7 message."""


def add_result(session: Session, job_id: int, result: EncodedObject, path: str) -> Result:
    """Add the row of a result written to ``path`` (relative to the spool root); flushed, so it
    has its id.

    Raises:
        sqlalchemy.exc.IntegrityError: if its SOP Instance UID is already recorded.
    """
    row = Result(
        job_id=job_id,
        kind=result.kind.value,
        sop_class_uid=result.sop_class_uid,
        series_instance_uid=result.series_instance_uid,
        sop_instance_uid=result.sop_instance_uid,
        control_id=result.control_id,
        path=path,
        sha256=hashlib.sha256(result.data).hexdigest(),
        size_bytes=len(result.data),
    )
    session.add(row)
    session.flush()
    return row


def analysed_report(session: Session, study_instance_uid: str) -> tuple[int, str] | None:
    """The latest analysis report of a study: (job id, spool path of its SR), from its newest job
    that analysed it (not superseded, not skipped); None when the node has none.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    row = session.execute(
        select(Job.id, Result.path)
        .join(Result, Result.job_id == Job.id)
        .join(Study, Study.id == Job.study_id)
        .where(
            Study.study_instance_uid == study_instance_uid,
            Job.state != JobState.SUPERSEDED.value,
            Job.skip_reason.is_(None),
            Result.kind == ResultKind.SR.value,
        )
        .order_by(Job.version.desc())
        .limit(1)
    ).first()
    return None if row is None else (row[0], row[1])
