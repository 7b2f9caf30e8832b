"""What the node holds, as DICOMweb sees it: received instances and the node's own results.

Results (SEG, SR, key images) belong to the study of their job; those of superseded job versions
are left out. A result the PACS sent back is held twice (as an ``own_result`` instance and as a
result): it is listed once.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from pacs_node.db.tables import Instance, Job, Result, Series, Study
from pacs_node.domain import JobState, ResultKind

DICOM_RESULT_KINDS = tuple(kind.value for kind in ResultKind if kind is not ResultKind.ORU)


@dataclass(frozen=True)
class HeldObject:
    """One DICOM object the node holds, and its file (relative to the spool root)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    path: str


@dataclass(frozen=True)
class Scope:
    """Which objects to list: each given collection restricts its level (empty matches none)."""

    studies: Collection[str] | None = None
    series: Collection[str] | None = None
    sops: Collection[str] | None = None


def held_objects(session: Session, scope: Scope) -> list[HeldObject]:
    """The objects in ``scope``: received instances in arrival order, then results.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    received = _restricted(
        select(
            Study.study_instance_uid,
            Series.series_instance_uid,
            Instance.sop_instance_uid,
            Instance.sop_class_uid,
            Instance.path,
        )
        .join(Series, Series.id == Instance.series_id)
        .join(Study, Study.id == Series.study_id)
        .order_by(Instance.id),
        scope,
        (Study.study_instance_uid, Series.series_instance_uid, Instance.sop_instance_uid),
    )
    results = _restricted(
        select(
            Study.study_instance_uid,
            Result.series_instance_uid,
            Result.sop_instance_uid,
            Result.sop_class_uid,
            Result.path,
        )
        .join(Job, Job.id == Result.job_id)
        .join(Study, Study.id == Job.study_id)
        .where(
            Job.state != JobState.SUPERSEDED.value,
            Result.kind.in_(DICOM_RESULT_KINDS),
            Result.series_instance_uid.is_not(None),
            Result.sop_instance_uid.is_not(None),
            Result.sop_class_uid.is_not(None),
        )
        .order_by(Result.id),
        scope,
        (Study.study_instance_uid, Result.series_instance_uid, Result.sop_instance_uid),
    )
    objects: dict[str, HeldObject] = {}
    for row in [*session.execute(received), *session.execute(results)]:
        objects.setdefault(row[2], HeldObject(*row))
    return list(objects.values())


def _restricted(
    query: Select[*tuple[Any, ...]], scope: Scope, columns: tuple[InstrumentedAttribute[Any], ...]
) -> Select[*tuple[Any, ...]]:
    """``query`` restricted to the studies, series and SOP instances of ``scope``."""
    for values, column in zip((scope.studies, scope.series, scope.sops), columns, strict=True):
        if values is not None:
            query = query.where(column.in_(list(values)))
    return query
