"""Reviewers' feedback on a job's results (``/api/jobs/{id}/feedback``, ``/api/feedback``).

Giving feedback is a review, not an admin action: a viewer token (the reviewing radiologist's)
may post it, as may an admin; a sender token may not. Each post is audited (action
``feedback``, the rows' ids, never the comment).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from pacs_node.api.auth import Viewer, remote_address
from pacs_node.api.routes import NOT_FOUND, Context
from pacs_node.api.schemas import FeedbackRecorded, FeedbackRequest, FeedbackSubject, JobFindings
from pacs_node.db import feedback
from pacs_node.db.admin_actions import JobNotFoundError
from pacs_node.db.tables import Job, Result
from pacs_node.domain import ResultKind
from pacs_node.results.sr_findings import findings_from_sr

router = APIRouter(prefix="/api")
FEEDBACK_ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: {"description": "the job has no results to review (skipped, or failed before them)"},
    422: {"description": "unknown level or abnormality, or a malformed value"},
}


def _item(subject: FeedbackSubject) -> feedback.FeedbackItem:
    if subject.segmentation:
        if subject.level is not None or subject.abnormality is not None:
            raise feedback.InvalidFeedbackError("the segmentation has no level or abnormality")
        return feedback.FeedbackItem()
    if subject.level is None or subject.abnormality is None:
        raise feedback.InvalidFeedbackError("a finding needs both its level and its abnormality")
    return feedback.FeedbackItem(subject.level, subject.abnormality)


@router.post(
    "/jobs/{job_id}/feedback",
    status_code=status.HTTP_201_CREATED,
    response_model=FeedbackRecorded,
    responses=FEEDBACK_ERRORS,
    summary="Accept, reject or amend findings or the segmentation of a job",
)
def give_feedback(
    context: Context, principal: Viewer, request: Request, job_id: int, body: FeedbackRequest
) -> FeedbackRecorded:
    """Record one verdict per item, with who and when, in one audited transaction."""
    try:
        items = [_item(subject) for subject in body.items]
        with context.sessions.begin() as session:
            ids = feedback.record_feedback(
                session,
                job_id,
                items,
                body.verdict,
                given_by=principal.name,
                amended_value=body.amended_value,
                comment=body.comment,
                remote_address=remote_address(request),
            )
    except JobNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except feedback.NoResultsError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except feedback.InvalidFeedbackError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return FeedbackRecorded(job_id=job_id, feedback_ids=ids)


@router.get(
    "/jobs/{job_id}/feedback",
    response_model=list[feedback.FeedbackEntry],
    responses=NOT_FOUND,
    summary="The feedback on the job's study, across its job versions",
)
def study_feedback(context: Context, _: Viewer, job_id: int) -> list[feedback.FeedbackEntry]:
    """Every verdict on the job's study (reference segmentations included), oldest first."""
    try:
        with context.sessions() as session:
            return feedback.feedback_for_study(session, job_id=job_id)
    except JobNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.get(
    "/jobs/{job_id}/findings",
    response_model=JobFindings,
    responses=NOT_FOUND,
    summary="The job's per-level findings (from its SR) as a reviewer checks them",
)
def job_findings(context: Context, _: Viewer, job_id: int) -> JobFindings:
    """Each disc level's present/absent calls, and whether the job made a segmentation."""
    with context.sessions() as session:
        paths = _result_paths(session, job_id)
    sr = paths.get(ResultKind.SR.value)
    path = None if sr is None else context.settings.spool_dir / sr
    return JobFindings(
        job_id=job_id,
        findings=_readable_findings(path),
        segmentation=ResultKind.SEG.value in paths,
    )


def _result_paths(session: Session, job_id: int) -> dict[str, str]:
    if session.get(Job, job_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return dict(
        session.execute(
            select(Result.kind, Result.path).where(
                Result.job_id == job_id, Result.kind.in_([ResultKind.SEG, ResultKind.SR])
            )
        ).all()
    )


def _readable_findings(path: Path | None) -> dict[str, dict[str, bool]]:
    """The SR's findings; none for a job without an SR or with a not-analysed one."""
    if path is None or not path.is_file():
        return {}
    try:
        return findings_from_sr(path)
    except ValueError:  # not a measurement report: the not-analysed SR
        return {}


@router.get(
    "/feedback/summary",
    response_model=list[feedback.ModelAgreement],
    summary="Agreement rates per model version",
)
def feedback_summary(context: Context, _: Viewer) -> list[feedback.ModelAgreement]:
    """Per model version: findings and segmentations reviewed, accepted, rejected, amended."""
    with context.sessions() as session:
        return feedback.agreement_by_model(session)
