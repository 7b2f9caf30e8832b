"""The instance ledger: records what the SCP stored, before the sender hears success."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.db.base import utcnow
from pacs_node.db.feedback import record_reference_segmentation
from pacs_node.db.tables import Instance, ReceiveError, Result, Series, Study
from pacs_node.domain import InstanceOrigin, ResultKind, StudyStatus
from pacs_node.errors import ConflictingInstanceError


@dataclass(frozen=True)
class InstanceRecord:
    """What the ledger keeps of one received instance."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    relative_path: str
    size_bytes: int
    instance_number: int | None = None
    patient_id: str | None = None
    accession_number: str | None = None
    series_number: int | None = None
    calling_ae: str | None = None
    series_attributes: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    origin: InstanceOrigin = InstanceOrigin.SOURCE
    references: frozenset[str] = frozenset()
    """A segmentation: the SOP Instance UIDs it refers to (``origin.referenced_instances``)."""
    corrects_job_id: int | None = None
    """A reference segmentation: the job whose SEG it corrects (set by the instance store)."""


@dataclass(frozen=True)
class HeldCopy:
    """The copy of an instance the node already holds: where it is filed and what it is."""

    instance_id: int
    study_instance_uid: str
    series_instance_uid: str
    relative_path: str
    sha256: str | None


class RecordOutcome(StrEnum):
    """Whether an instance was new or a repeat of one we already hold."""

    NEW = "new"
    REPEATED = "repeated"


# The statements of the C-STORE path, built once: building one per instance (coercing its
# clauses, generating its cache key) cost more than running it.
_HELD_COPY = (
    select(
        Instance.id,
        Study.study_instance_uid,
        Series.series_instance_uid,
        Instance.path,
        Instance.sha256,
    )
    .join(Series, Series.id == Instance.series_id)
    .join(Study, Study.id == Series.study_id)
    .where(Instance.sop_instance_uid == bindparam("p_sop"))
)
_HELD_INSTANCE = select(Instance.id, Instance.series_id).where(
    Instance.sop_instance_uid == bindparam("p_sop")
)
_INSERT_INSTANCE = insert(Instance).returning(Instance.id)
_NEW_INSTANCE_IN_STUDY = (
    update(Study)
    .where(Study.id == bindparam("p_study_id"))
    .values(
        status=StudyStatus.RECEIVING.value,
        last_received_at=bindparam("p_now"),
        calling_ae=bindparam("p_calling_ae"),
        patient_id=func.coalesce(bindparam("p_patient_id"), Study.patient_id),
        accession_number=func.coalesce(bindparam("p_accession"), Study.accession_number),
    )
)


class InstanceLedger:
    """Database side of receiving: studies, series, instances and refusals.

    The C-STORE path runs one short transaction of Core statements per instance; the ids of
    series already seen are cached (rows are never deleted), so a typical instance costs one
    lookup, one insert and one update.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._series_ids: dict[str, tuple[str, int, int]] = {}
        self._lock = threading.Lock()

    def record_instance(self, record: InstanceRecord) -> RecordOutcome:
        """Record a stored instance (idempotent for repeats).

        Raises:
            ConflictingInstanceError: if the SOP Instance UID belongs to another study/series.
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """
        for attempt in range(3):
            try:
                with self._sessions.begin() as session:
                    outcome, ids = self._record(session.connection(), record)
                # Cache only what is committed: a rolled-back insert must not be remembered.
                with self._lock:
                    self._series_ids[record.series_instance_uid] = ids
                return outcome
            except IntegrityError:
                # Another association created the same study/series/instance concurrently.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _record(
        self, conn: Connection, record: InstanceRecord
    ) -> tuple[RecordOutcome, tuple[str, int, int]]:
        now = utcnow()
        ids = self._ids(conn, record)
        _, study_id, series_id = ids
        existing = conn.execute(_HELD_INSTANCE, {"p_sop": record.sop_instance_uid}).first()
        if existing is not None:
            if existing.series_id != series_id:
                held_in_study = conn.scalar(
                    select(Series.study_id).where(Series.id == existing.series_id)
                )
                where = "series" if held_in_study == study_id else "study"
                raise ConflictingInstanceError(
                    f"SOP Instance UID already stored in another {where}"
                )
            conn.execute(
                update(Instance)
                .where(Instance.id == existing.id)
                .values(
                    times_received=Instance.times_received + 1,
                    sha256=func.coalesce(Instance.sha256, record.sha256),
                    received_at=now,
                )
            )
            return RecordOutcome.REPEATED, ids
        instance_id = conn.execute(
            _INSERT_INSTANCE,
            {
                "series_id": series_id,
                "sop_instance_uid": record.sop_instance_uid,
                "sop_class_uid": record.sop_class_uid,
                "transfer_syntax_uid": record.transfer_syntax_uid,
                "instance_number": record.instance_number,
                "path": record.relative_path,
                "size_bytes": record.size_bytes,
                "sha256": record.sha256,
                "calling_ae": record.calling_ae,
                "received_at": now,
                "times_received": 1,
            },
        ).scalar_one()
        if record.corrects_job_id is not None:
            record_reference_segmentation(
                conn,
                job_id=record.corrects_job_id,
                instance_id=instance_id,
                sender=record.calling_ae,
            )
        if record.origin is not InstanceOrigin.SOURCE:
            # Derived objects and the node's own results never open a study (the loop guard).
            return RecordOutcome.NEW, ids
        # A new instance keeps the study open (or reopens a completed one: late series).
        conn.execute(
            _NEW_INSTANCE_IN_STUDY,
            {
                "p_study_id": study_id,
                "p_now": now,
                "p_calling_ae": record.calling_ae,
                "p_patient_id": record.patient_id,
                "p_accession": _clip(record.accession_number, 16),
            },
        )
        return RecordOutcome.NEW, ids

    def _ids(self, conn: Connection, record: InstanceRecord) -> tuple[str, int, int]:
        """(study UID, study id, series id) for the record, creating rows on first sight.

        Raises:
            ConflictingInstanceError: if the series belongs to another study.
        """
        with self._lock:
            ids = self._series_ids.get(record.series_instance_uid)
        if ids is None:
            row = conn.execute(
                select(Study.study_instance_uid, Study.id, Series.id)
                .join(Series, Series.study_id == Study.id)
                .where(Series.series_instance_uid == record.series_instance_uid)
            ).first()
            ids = (row[0], row[1], row[2]) if row is not None else self._create(conn, record)
        if ids[0] != record.study_instance_uid:
            raise ConflictingInstanceError("Series Instance UID already stored in another study")
        return ids

    def _create(self, conn: Connection, record: InstanceRecord) -> tuple[str, int, int]:
        study_id = conn.scalar(
            select(Study.id).where(Study.study_instance_uid == record.study_instance_uid)
        )
        if study_id is None:
            source = record.origin is InstanceOrigin.SOURCE
            study_id = conn.execute(
                insert(Study)
                .values(
                    study_instance_uid=record.study_instance_uid,
                    status=(StudyStatus.RECEIVING if source else StudyStatus.DERIVED_ONLY).value,
                    force_complete=False,
                )
                .returning(Study.id)
            ).scalar_one()
        attrs = record.series_attributes
        series_id = conn.execute(
            insert(Series)
            .values(
                study_id=study_id,
                series_instance_uid=record.series_instance_uid,
                modality=attrs.get("Modality"),
                series_number=record.series_number,
                series_description=_clip(attrs.get("SeriesDescription"), 64),
                body_part_examined=_clip(attrs.get("BodyPartExamined"), 16),
                attributes=attrs,
                origin=record.origin.value,
            )
            .returning(Series.id)
        ).scalar_one()
        return record.study_instance_uid, study_id, series_id

    def held_copy(self, sop_instance_uid: str) -> HeldCopy | None:
        """The recorded copy of an instance, if the node holds one.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """
        with self._sessions() as session:
            row = session.execute(_HELD_COPY, {"p_sop": sop_instance_uid}).first()
        return None if row is None else HeldCopy(*row)

    def is_own_result(self, sop_instance_uid: str) -> bool:
        """True if the node made this instance (one of its results came back to it).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """
        with self._sessions() as session:
            found = session.scalar(
                select(Result.id).where(Result.sop_instance_uid == sop_instance_uid)
            )
        return found is not None

    def job_corrected_by(self, references: frozenset[str]) -> int | None:
        """The job whose SEG is among ``references`` (a segmentation's referenced instances).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """
        if not references:
            return None
        with self._sessions() as session:
            return session.scalar(
                select(Result.job_id)
                .where(
                    Result.kind == ResultKind.SEG.value,
                    Result.sop_instance_uid.in_(sorted(references)),
                )
                .order_by(Result.id.desc())
                .limit(1)
            )

    def record_different_copy(self, instance_id: int) -> None:
        """Count a copy with other content sent under a held SOP Instance UID (not stored).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """
        with self._sessions.begin() as session:
            session.execute(
                update(Instance)
                .where(Instance.id == instance_id)
                .values(different_copies=Instance.different_copies + 1)
            )

    def record_rejection(
        self,
        *,
        status: int,
        reason: str,
        calling_ae: str | None,
        peer_address: str | None,
        sop_instance_uid: str | None,
    ) -> None:
        """Keep a row for an instance we refused; never raises into the caller's path.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """
        with self._sessions.begin() as session:
            session.add(
                ReceiveError(
                    calling_ae=_clip(calling_ae, 16),
                    peer_address=_clip(peer_address, 64),
                    sop_instance_uid=_clip(sop_instance_uid, 80),
                    status=status,
                    reason=reason[:2000],
                )
            )

    def mark_released(self, study_uids: Iterable[str], at: datetime | None = None) -> None:
        """Note that the association that sent to these studies was released.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """
        uids = list(study_uids)
        if not uids:
            return
        with self._sessions.begin() as session:
            session.execute(
                update(Study)
                .where(Study.study_instance_uid.in_(uids))
                .values(last_released_at=at or utcnow())
            )


def _clip(value: object, length: int) -> str | None:
    if value is None or value == "":
        return None
    return str(value)[:length]
