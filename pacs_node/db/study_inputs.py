"""What a job's analysis reads from the database: its study, version, files and skip reason."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pacs_node.db.tables import Instance, Job, Series, Study
from pacs_node.domain import InstanceOrigin, SeriesRole
from pacs_node.selection import SeriesCandidate, choose_series


@dataclass(frozen=True)
class StudyInputs:
    """A job's inputs.

    Attributes:
        study_instance_uid: The study analysed.
        version: The job's version within its study.
        created_at: When the job was created (stamped into its results).
        skip_reason: Why the study is out of intended use (None when it is analysed).
        series: Spool-relative paths of the chosen series' instances, by role.
        first_instance: The spool-relative path of the study's first source image.
        trigger: Why the study was completed (CompletionTrigger value; ``prior`` for a study
            fetched only to be compared with).
    """

    study_instance_uid: str
    version: int
    created_at: datetime
    skip_reason: str | None
    series: dict[SeriesRole, list[str]]
    first_instance: str | None
    trigger: str | None


def study_inputs(session: Session, job_id: int) -> StudyInputs:
    """Read what analysing ``job_id`` needs; series are chosen by
    :func:`~pacs_node.selection.choose_series` among its study's source series.

    Raises:
        sqlalchemy.exc.NoResultFound: if there is no such job.
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    study_id, study_uid, version, created, skip_reason, trigger = session.execute(
        select(
            Job.study_id,
            Study.study_instance_uid,
            Job.version,
            Job.created_at,
            Job.skip_reason,
            Job.trigger,
        )
        .join(Study, Study.id == Job.study_id)
        .where(Job.id == job_id)
    ).one()
    source = (Series.study_id == study_id, Series.origin == InstanceOrigin.SOURCE.value)
    counts = session.execute(
        select(Series.id, Series.role, func.count(Instance.id))
        .join(Instance, Instance.series_id == Series.id)
        .where(*source, Series.role.is_not(None))
        .group_by(Series.id, Series.role)
    )
    chosen = choose_series(
        SeriesCandidate(series_id, SeriesRole(str(role)), count)
        for series_id, role, count in counts
    )
    series = {
        role: list(
            session.scalars(
                select(Instance.path).where(Instance.series_id == series_id).order_by(Instance.id)
            )
        )
        for role, series_id in chosen.items()
    }
    first = session.scalar(
        select(Instance.path)
        .join(Series, Series.id == Instance.series_id)
        .where(*source)
        .order_by(Instance.id)
        .limit(1)
    )
    return StudyInputs(study_uid, version, created, skip_reason, series, first, trigger)
