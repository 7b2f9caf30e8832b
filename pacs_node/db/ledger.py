"""The instance ledger: records what the SCP stored, before the sender hears success."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.db.base import utcnow
from pacs_node.db.tables import Instance, ReceiveError, Series, Study
from pacs_node.domain import StudyStatus
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


class RecordOutcome(StrEnum):
    """Whether an instance was new or a repeat of one we already hold."""

    NEW = "new"
    REPEATED = "repeated"


class InstanceLedger:
    """Database side of receiving: studies, series, instances and refusals."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def check_conflict(self, sop_uid: str, study_uid: str, series_uid: str) -> None:
        """Refuse a SOP Instance UID we already hold under another study or series.

        Raises:
            ConflictingInstanceError: if the UID belongs to a different study or series.
        """
        with self._sessions() as session:
            row = session.execute(
                select(Series.series_instance_uid, Study.study_instance_uid)
                .join(Instance, Instance.series_id == Series.id)
                .join(Study, Study.id == Series.study_id)
                .where(Instance.sop_instance_uid == sop_uid)
            ).first()
        if row is not None and (row[0], row[1]) != (series_uid, study_uid):
            where = "study" if row[1] != study_uid else "series"
            raise ConflictingInstanceError(f"SOP Instance UID already stored in another {where}")

    def record_instance(self, record: InstanceRecord) -> RecordOutcome:
        """Record a stored instance (idempotent for repeats).

        Raises:
            ConflictingInstanceError: if the SOP Instance UID belongs to another study/series.
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """
        for attempt in range(3):
            try:
                with self._sessions.begin() as session:
                    return self._record(session, record)
            except IntegrityError:
                # Another association created the same study/series/instance concurrently.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _record(self, session: Session, record: InstanceRecord) -> RecordOutcome:
        now = utcnow()
        study = session.scalar(
            select(Study).where(Study.study_instance_uid == record.study_instance_uid)
        )
        if study is None:
            study = Study(
                study_instance_uid=record.study_instance_uid,
                status=StudyStatus.RECEIVING,
                first_received_at=now,
            )
            session.add(study)
        series = session.scalar(
            select(Series).where(Series.series_instance_uid == record.series_instance_uid)
        )
        if series is None:
            series = Series(
                study=study,
                series_instance_uid=record.series_instance_uid,
                modality=record.series_attributes.get("Modality"),
                series_number=record.series_number,
                series_description=_clip(record.series_attributes.get("SeriesDescription"), 64),
                body_part_examined=_clip(record.series_attributes.get("BodyPartExamined"), 16),
                attributes=record.series_attributes,
            )
            session.add(series)
        elif series.study_id != study.id:
            raise ConflictingInstanceError("Series Instance UID already stored in another study")
        instance = session.scalar(
            select(Instance).where(Instance.sop_instance_uid == record.sop_instance_uid)
        )
        if instance is not None:
            if instance.series_id != series.id:
                raise ConflictingInstanceError("SOP Instance UID already stored in another series")
            instance.times_received += 1
            instance.size_bytes = record.size_bytes
            instance.transfer_syntax_uid = record.transfer_syntax_uid
            instance.received_at = now
            return RecordOutcome.REPEATED
        session.add(
            Instance(
                series=series,
                sop_instance_uid=record.sop_instance_uid,
                sop_class_uid=record.sop_class_uid,
                transfer_syntax_uid=record.transfer_syntax_uid,
                instance_number=record.instance_number,
                path=record.relative_path,
                size_bytes=record.size_bytes,
                calling_ae=record.calling_ae,
                received_at=now,
            )
        )
        # A new instance keeps the study open (or reopens a completed one: late series).
        study.status = StudyStatus.RECEIVING
        study.last_received_at = now
        study.calling_ae = record.calling_ae
        study.patient_id = record.patient_id or study.patient_id
        study.accession_number = _clip(record.accession_number, 16) or study.accession_number
        return RecordOutcome.NEW

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
