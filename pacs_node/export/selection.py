"""Which jobs an export takes: named ones, or the latest analysis of each study since a date."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from pacs_node.db.study_inputs import study_inputs
from pacs_node.db.tables import Job, Result
from pacs_node.domain import JobState, ResultKind
from pacs_node.errors import NodeError

ANALYSED = frozenset(
    {JobState.RESULTS_READY, JobState.DELIVERING, JobState.NOTIFYING, JobState.DONE}
)
"""States of a job whose analysis is complete (a superseded one only when named)."""


class ExportSelectionError(NodeError, ValueError):
    """The jobs asked for cannot be exported: unknown, not analysed, or none at all."""


@dataclass(frozen=True)
class ExportJob:
    """One analysis to export: spool-relative paths of its images (by series role), SEG and SR.

    ``job_id`` and ``study_id`` are row ids: they never leave the node.
    """

    job_id: int
    study_id: int
    images: dict[str, list[str]]
    seg: str
    sr: str
    model_name: str | None
    checkpoint_sha256: str | None
    config_hash: str | None


def select_named(session: Session, job_ids: Sequence[int]) -> list[ExportJob]:
    """The named jobs, each an analysis (a superseded version too), of distinct studies.

    Raises:
        ExportSelectionError: if a job does not exist, did not analyse its study, or two name the
            same study.
    """
    jobs = []
    for job_id in dict.fromkeys(job_ids):
        job = session.get(Job, job_id)
        if job is None:
            raise ExportSelectionError(f"no job {job_id}")
        allowed = job.state in ANALYSED or job.state == JobState.SUPERSEDED
        if not allowed or job.skip_reason is not None:
            raise ExportSelectionError(f"job {job_id} did not analyse its study ({job.state})")
        jobs.append(job)
    studies = [job.study_id for job in jobs]
    if len(set(studies)) != len(studies):
        raise ExportSelectionError("two of the jobs are versions of one study: name one")
    selected = []
    for job in jobs:
        exported = _export_job(session, job)
        if exported is None:
            raise ExportSelectionError(f"job {job.id} has no SEG and SR to export")
        selected.append(exported)
    return selected


def select_since(session: Session, since: datetime) -> list[ExportJob]:
    """The latest analysis of each study among the jobs created since ``since``.

    Raises:
        ExportSelectionError: if there is none.
    """
    jobs = session.scalars(
        select(Job)
        .where(
            Job.created_at >= since,
            Job.state.in_([state.value for state in ANALYSED]),
            Job.skip_reason.is_(None),
        )
        .order_by(Job.study_id, Job.version.desc())
    )
    latest: dict[int, Job] = {}
    for job in jobs:
        latest.setdefault(job.study_id, job)
    selected = (_export_job(session, job) for job in latest.values())
    found = [job for job in selected if job is not None]
    if not found:
        raise ExportSelectionError(f"no analysed study since {since:%Y-%m-%d %H:%M}")
    return found


def _export_job(session: Session, job: Job) -> ExportJob | None:
    """The job's files; None when it lacks its SEG or SR (its latest of each is taken)."""
    results = dict(
        session.execute(
            select(Result.kind, Result.path)
            .where(
                Result.job_id == job.id,
                Result.kind.in_([ResultKind.SEG.value, ResultKind.SR.value]),
            )
            .order_by(Result.id)
        ).all()
    )
    if len(results) < 2:
        return None
    inputs = study_inputs(session, job.id)
    return ExportJob(
        job_id=job.id,
        study_id=job.study_id,
        images={role.value: paths for role, paths in inputs.series.items()},
        seg=results[ResultKind.SEG.value],
        sr=results[ResultKind.SR.value],
        model_name=job.model_name,
        checkpoint_sha256=job.checkpoint_sha256,
        config_hash=job.config_hash,
    )
