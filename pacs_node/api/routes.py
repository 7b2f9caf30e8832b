"""Job history, job detail, overlay preview, statistics, audit and admin actions (``/api``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from sqlalchemy import select

from pacs_node import admin
from pacs_node.api.auth import Admin, Viewer, remote_address
from pacs_node.api.context import ApiContext, get_context
from pacs_node.api.overlay import OverlayUnavailableError, render_overlay_png
from pacs_node.api.schemas import ActionAccepted, ForceCompleteRequest, NodeInfo, ReplayRequest
from pacs_node.db import admin_actions, queries
from pacs_node.db.node_identity import NodeIdentityMissingError, read_node_identity
from pacs_node.db.tables import Instance, Job, Result
from pacs_node.domain import JobState, ResultKind
from pacs_node.errors import InvalidIdentifierError, StudyIncompleteError
from pacs_node.results.identity import DEFAULT_UID_PREFIX
from pacs_node.results.sr_findings import findings_from_sr
from pacs_node.version import SOFTWARE_VERSION

router = APIRouter(prefix="/api")
Context = Annotated[ApiContext, Depends(get_context)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such job"}}


def _unprocessable(exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))


@router.get("/jobs", response_model=queries.JobPage, summary="Job history, newest first")
def list_jobs(
    context: Context,
    _: Viewer,
    state: Annotated[list[JobState], Query(description="any of these states")] = [],  # noqa: B006
    created_from: Annotated[datetime | None, Query(description="ISO 8601 with zone")] = None,
    created_to: Annotated[datetime | None, Query(description="exclusive")] = None,
    patient_id: str | None = None,
    accession_number: str | None = None,
    study_instance_uid: str | None = None,
    calling_ae: str | None = None,
    model_name: str | None = None,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> queries.JobPage:
    """Jobs matching every given filter; page with ``cursor``."""
    try:
        filters = queries.JobFilters(
            states=tuple(state),
            created_from=created_from,
            created_to=created_to,
            patient_id=patient_id,
            accession_number=accession_number,
            study_instance_uid=study_instance_uid,
            calling_ae=calling_ae,
            model_name=model_name,
        )
        with context.sessions() as session:
            return queries.list_jobs(session, filters, limit=limit, cursor=cursor)
    except ValueError as exc:  # InvalidIdentifierError is a ValueError
        raise _unprocessable(exc) from exc


@router.get("/jobs/{job_id}", response_model=queries.JobDetail, responses=NOT_FOUND)
def get_job(context: Context, _: Viewer, job_id: int) -> queries.JobDetail:
    """A job with its timeline, series, results, deliveries, HL7 ACKs and errors."""
    with context.sessions() as session:
        detail = queries.job_detail(session, job_id)
    if detail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return detail


@router.get(
    "/jobs/{job_id}/overlay.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **NOT_FOUND},
)
def job_overlay(context: Context, _: Viewer, job_id: int) -> Response:
    """The job's SEG rendered over the source slice it covers most, its findings marked."""
    root = context.settings.spool_dir
    with context.sessions() as session:
        if session.get(Job, job_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
        paths = dict(
            session.execute(
                select(Result.kind, Result.path)
                .where(Result.job_id == job_id, Result.kind.in_([ResultKind.SEG, ResultKind.SR]))
                .order_by(Result.id)
            ).all()
        )
    seg, sr = paths.get(ResultKind.SEG), paths.get(ResultKind.SR)
    if seg is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} has no SEG result")

    def source_path(sop_instance_uid: str) -> Path | None:
        with context.sessions() as session:
            relative = session.scalar(
                select(Instance.path).where(Instance.sop_instance_uid == sop_instance_uid)
            )
        return None if relative is None else root / relative

    findings = findings_from_sr(root / sr) if sr is not None and (root / sr).is_file() else None
    try:
        png = render_overlay_png(root / seg, source_path, findings)
    except OverlayUnavailableError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


@router.get("/node", response_model=NodeInfo, summary="This node's identity")
def get_node(context: Context, _: Viewer) -> NodeInfo:
    """The node's identity, AE title, software version and result UID root."""
    try:
        with context.sessions() as session:
            row = read_node_identity(session)
    except NodeIdentityMissingError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    settings = context.settings
    return NodeInfo(
        node_id=row.node_id,
        created_at=row.created_at,
        ae_title=settings.ae_title,
        software_version=SOFTWARE_VERSION,
        uid_root=settings.uid_root or DEFAULT_UID_PREFIX,
    )


@router.get("/stats", response_model=queries.Stats, summary="Counts, queue depth, turnaround")
def get_stats(
    context: Context, _: Viewer, days: Annotated[int, Query(ge=1, le=366)] = 14
) -> queries.Stats:
    """Jobs by state, queue depth, and per-day throughput and turnaround percentiles."""
    with context.sessions() as session:
        return queries.stats(session, days=days)


@router.get("/audit", response_model=list[queries.AuditEntry])
def get_audit(
    context: Context,
    _: Admin,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE_SIZE)] = 100,
) -> list[queries.AuditEntry]:
    """The latest admin actions (admins only)."""
    with context.sessions() as session:
        return queries.audit_entries(session, limit=limit)


ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such job"},
    409: {"description": "the action does not apply to the job's state"},
}


@router.post(
    "/jobs/{job_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ActionAccepted,
    responses=ACTION_ERRORS,
)
def retry(context: Context, principal: Admin, request: Request, job_id: int) -> ActionAccepted:
    """Put a failed job back in the queue (attempts reset)."""
    try:
        admin.retry_and_enqueue(
            context.sessions,
            context.queue,
            job_id,
            actor=principal.name,
            remote_address=remote_address(request),
        )
    except admin_actions.JobNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except admin_actions.ActionRejectedError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return ActionAccepted(action="retry", target=f"job:{job_id}", detail="queued")


@router.post(
    "/jobs/{job_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ActionAccepted,
    responses=ACTION_ERRORS,
)
def replay(
    context: Context, principal: Admin, request: Request, job_id: int, body: ReplayRequest
) -> ActionAccepted:
    """Send the job's results to one destination again."""
    try:
        count = admin.replay_and_wake(
            context.sessions,
            context.queue,
            job_id,
            body.destination,
            actor=principal.name,
            remote_address=remote_address(request),
        )
    except admin_actions.JobNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except admin_actions.ActionRejectedError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return ActionAccepted(
        action="replay", target=f"job:{job_id}", detail=f"{count} deliveries pending"
    )


@router.post(
    "/studies/force-complete",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ActionAccepted,
    responses={409: {"description": "no such study is receiving"}},
)
def force_complete(
    context: Context, principal: Admin, request: Request, body: ForceCompleteRequest
) -> ActionAccepted:
    """Complete a receiving study at the next assembly check."""
    try:
        admin.force_complete_and_audit(
            context.sessions,
            context.assembler,
            body.study_instance_uid,
            actor=principal.name,
            remote_address=remote_address(request),
        )
    except InvalidIdentifierError as exc:
        raise _unprocessable(exc) from exc
    except StudyIncompleteError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return ActionAccepted(action="force-complete", target="study", detail="completes shortly")
