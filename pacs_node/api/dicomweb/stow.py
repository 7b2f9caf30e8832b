"""STOW-RS (PS3.18 §10.5): ``POST /dicom-web/studies[/{study}]`` with ``multipart/related;
type="application/dicom"``.

Each instance goes through the same intake as a C-STORE (:mod:`pacs_node.intake`): the same
checks, durable before the answer, the same statuses; a refused instance is a FailedSOPSequence
item whose FailureReason is the status a C-STORE would have answered. After the request the
studies that got source images are marked released, as an association release does.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from io import BytesIO
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydicom import Dataset, dcmread
from starlette.concurrency import run_in_threadpool

from pacs_node.api.auth import Sender as SenderToken
from pacs_node.api.dicomweb.context import (
    DicomWebContext,
    get_dicomweb,
    path_uid,
    retrieve_url,
)
from pacs_node.api.dicomweb.multipart import (
    DICOM,
    DICOM_JSON,
    MULTIPART_RELATED,
    MultipartError,
    Part,
    parse_media_type,
    parse_multipart,
)
from pacs_node.domain import InstanceOrigin
from pacs_node.intake import REFUSED, Check, Received, RefusedError, Sender, summary, tally_key
from pacs_node.scp.statuses import StoreStatus

LOG = logging.getLogger(__name__)
CALLING_AE_LENGTH = 16
"""The token name stands for the calling AE title in rows and log lines, clipped as one."""
MAX_BODY_BYTES = 1 << 30
"""Largest STOW-RS request body (1 GiB; it is held in memory while its instances are stored)."""

PREAMBLE = bytes(128) + b"DICM"
DICM_PREFIX = PREAMBLE[128:]
FILE_META_GROUP = b"\x02\x00"
"""Group 0002 little endian: the first bytes of a file meta group."""

router = APIRouter()
Context = Annotated[DicomWebContext, Depends(get_dicomweb)]
RESPONSES: dict[int | str, dict[str, str]] = {
    202: {"description": "some instances stored, some refused (FailedSOPSequence)"},
    400: {"description": "the body is not a multipart/related message"},
    409: {"description": "no instance stored (FailedSOPSequence)"},
    413: {"description": "the body is over the size limit"},
    415: {"description": 'not multipart/related; type="application/dicom"'},
}


@router.post("/studies", summary="STOW-RS: store instances", responses=RESPONSES)
async def store_instances(request: Request, context: Context, token: SenderToken) -> Response:
    """Store the instances of a multipart/related body (any studies)."""
    return await _stow(request, context, token.name, None)


@router.post("/studies/{study}", summary="STOW-RS: store instances of a study", responses=RESPONSES)
async def store_study_instances(
    request: Request, study: str, context: Context, token: SenderToken
) -> Response:
    """Store the instances of a multipart/related body; each must belong to ``study``."""
    return await _stow(request, context, token.name, path_uid(study, "Study Instance UID"))


async def _stow(
    request: Request, context: DicomWebContext, token_name: str, study: str | None
) -> Response:
    boundary = _boundary(request.headers.get("content-type"))
    try:
        parts = parse_multipart(await _body(request), boundary)
    except MultipartError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"malformed body: {exc}") from exc
    if not parts:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body has no parts")
    _check_part_types(parts)
    client = request.client.host if request.client else "unknown"
    sender = Sender(token_name[:CALLING_AE_LENGTH], client)
    received = await run_in_threadpool(_store_all, context, parts, sender, study)
    return _answer(request, received, study)


def _boundary(header: str | None) -> str:
    """The boundary of a STOW-RS body's Content-Type.

    Raises:
        HTTPException: 415 unless multipart/related of application/dicom; 400 without boundary.
    """
    try:
        media_type = parse_media_type(header or "")
    except MultipartError:
        media_type = None
    if (
        media_type is None
        or media_type.type != MULTIPART_RELATED
        or media_type.parameters.get("type", "").lower() != DICOM
    ):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f'send {MULTIPART_RELATED}; type="{DICOM}"',
        )
    boundary = media_type.parameters.get("boundary")
    if not boundary:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the Content-Type has no boundary")
    return boundary


async def _body(request: Request) -> bytearray:
    """The request body, refused with 413 once it passes :data:`MAX_BODY_BYTES`."""
    declared = request.headers.get("content-length", "")
    too_large = HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE, f"the body is over {MAX_BODY_BYTES} bytes"
    )
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return body


def _check_part_types(parts: list[Part]) -> None:
    for part in parts:
        try:
            part_type = part.content_type
        except MultipartError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "malformed part Content-Type") from exc
        if part_type is not None and part_type.type != DICOM:
            raise HTTPException(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"every part must be {DICOM}"
            )


def _in_study(study: str | None) -> Check | None:
    if study is None:
        return None

    def check(ds: Dataset) -> None:
        if ds.StudyInstanceUID != study:
            raise RefusedError(
                StoreStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                "Study Instance UID differs from the study in the request URL",
            )

    return check


def _file_of(content: bytes) -> tuple[Callable[[], Dataset], Callable[[], bytes]]:
    """How the intake reads a part's data set, and the bytes it stores (a DICOM file)."""
    data = _with_preamble(content)
    return (lambda: dcmread(BytesIO(data))), (lambda: data)


def _with_preamble(content: bytes) -> bytes:
    """A part as a PS3.10 file: clients that write one without its preamble (pydicom's default)
    send the file meta group first; it gets the preamble and prefix the spool's files have."""
    if content[128:132] != DICM_PREFIX and content[:2] == FILE_META_GROUP:
        return PREAMBLE + content
    return content


def _store_all(
    context: DicomWebContext, parts: list[Part], sender: Sender, study: str | None
) -> list[Received]:
    """Store each part (blocking: file writes, fsync, database), then note the release."""
    check = _in_study(study)
    received, counts, released = [], Counter[str](), set()
    for part in parts:
        read, encoded = _file_of(part.content)
        outcome = context.intake.receive(read, encoded, sender, check=check)
        received.append(outcome)
        if outcome.stored is None or outcome.record is None:
            counts[REFUSED] += 1
            continue
        counts[tally_key(outcome.stored)] += 1
        if outcome.stored.origin is InstanceOrigin.SOURCE:
            released.add(outcome.record.study_instance_uid)
    try:
        context.intake.ledger.mark_released(released)
    except Exception:
        LOG.exception("could not record the end of a STOW-RS request")
    LOG.info("STOW-RS from %s at %s: %s", sender.name, sender.address, summary(counts))
    return received


def _answer(request: Request, received: list[Received], study: str | None) -> Response:
    """The STOW-RS response: 200 all stored, 202 some refused, 409 none stored."""
    answer = Dataset()
    if study is not None:
        answer.RetrieveURL = retrieve_url(request, study)
    stored = [r.record for r in received if r.record is not None]
    failed = [r for r in received if r.record is None]
    if stored:
        answer.ReferencedSOPSequence = [
            _item(
                ReferencedSOPClassUID=record.sop_class_uid,
                ReferencedSOPInstanceUID=record.sop_instance_uid,
                RetrieveURL=retrieve_url(
                    request,
                    record.study_instance_uid,
                    record.series_instance_uid,
                    record.sop_instance_uid,
                ),
            )
            for record in stored
        ]
    if failed:
        answer.FailedSOPSequence = [_failure(r) for r in failed]
    code = status.HTTP_200_OK if not failed else status.HTTP_202_ACCEPTED
    if not stored:
        code = status.HTTP_409_CONFLICT
    return Response(json.dumps(answer.to_json_dict()), status_code=code, media_type=DICOM_JSON)


def _failure(received: Received) -> Dataset:
    item = Dataset()
    if received.identity is not None:
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = received.identity
    item.FailureReason = int(received.status)
    return item


def _item(**values: str) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item
