"""Retrieve on demand (``/api/retrievals``): an admin asks for a study from a source; viewers
follow each retrieval until its study becomes a job.

The source is queried (C-FIND) before the answer, so a wrong source, a malformed request or a
study the source lacks is refused at once; the transfer runs after the answer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query, Request, status

from pacs_node.api.auth import Admin, Viewer, remote_address
from pacs_node.api.routes import Context
from pacs_node.api.schemas import RetrieveAccepted, RetrieveRequest
from pacs_node.db.retrievals import RetrievalInfo, get_retrieval, recent_retrievals
from pacs_node.retrieve.retriever import NothingFoundError, Retriever, RetrieveRequestError
from pacs_node.retrieve.scu import SourceUnavailableError
from pacs_node.spool import Spool

router = APIRouter(prefix="/api/retrievals")


def _retriever(context: Context) -> Retriever:
    settings = context.settings
    return Retriever(
        settings,
        context.sessions,
        Spool(settings.spool_dir, settings.min_free_bytes),
        context.assembler.force_complete,
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RetrieveAccepted,
    responses={
        404: {"description": "the source holds no such study"},
        422: {"description": "unknown source, or not exactly one of accession and UID"},
        502: {"description": "the source cannot be queried"},
    },
    summary="Fetch a study from a source and analyse it on arrival",
)
def retrieve(
    context: Context,
    principal: Admin,
    request: Request,
    body: RetrieveRequest,
    background: BackgroundTasks,
) -> RetrieveAccepted:
    """C-FIND the source now; C-MOVE (or C-GET) each matching study after answering."""
    retriever = _retriever(context)
    try:
        source, matches = retriever.request(
            body.source, accession=body.accession_number, study_uid=body.study_instance_uid
        )
    except RetrieveRequestError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except NothingFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except SourceUnavailableError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from exc
    started = retriever.start_audited(
        source, matches, requested_by=principal.name, remote_address=remote_address(request)
    )
    for retrieval_id, study_uid in started:
        background.add_task(retriever.transfer, retrieval_id, source, study_uid)
    return RetrieveAccepted(retrievals=[retrieval_id for retrieval_id, _ in started])


@router.get("", response_model=list[RetrievalInfo], summary="Latest retrievals, newest first")
def list_retrievals(
    context: Context, _: Viewer, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[RetrievalInfo]:
    """Recent retrievals with their state, counts and the job each became."""
    with context.sessions() as session:
        return recent_retrievals(session, limit)


@router.get("/{retrieval_id}", response_model=RetrievalInfo, responses={404: {}})
def show_retrieval(context: Context, _: Viewer, retrieval_id: int) -> RetrievalInfo:
    """One retrieval."""
    with context.sessions() as session:
        info = get_retrieval(session, retrieval_id)
    if info is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no retrieval {retrieval_id}")
    return info
