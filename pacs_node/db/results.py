"""Result rows: each object a job produced, with its fixed identity and its file in the spool."""

from __future__ import annotations

import hashlib
from typing import Protocol

from sqlalchemy.orm import Session

from pacs_node.db.tables import Result
from pacs_node.domain import ResultKind


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
