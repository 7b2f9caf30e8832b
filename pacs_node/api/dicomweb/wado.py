"""WADO-RS (PS3.18 §10.4): studies, series and instances as stored (``multipart/related;
type="application/dicom"``), their metadata (``application/dicom+json``, bulk data by
``BulkDataURI``), frames (``application/octet-stream``) and bulk data.

Instances are returned in the transfer syntax they were received in. Frames are native
(uncompressed, little endian) unless the Accept header allows any transfer syntax
(``transfer-syntax=*``), when compressed frames are returned as stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import StreamingResponse
from pydicom import dcmread
from pydicom.tag import BaseTag, Tag

from pacs_node.api.auth import Viewer
from pacs_node.api.dicomweb.attributes import bulk_value, metadata
from pacs_node.api.dicomweb.catalog import HeldObject, Scope, held_objects
from pacs_node.api.dicomweb.context import (
    DicomWebContext,
    get_dicomweb,
    path_uid,
    retrieve_url,
)
from pacs_node.api.dicomweb.frames import (
    FramesNotDecodableError,
    NoSuchFrameError,
    frames,
)
from pacs_node.api.dicomweb.multipart import (
    DICOM,
    DICOM_JSON,
    MULTIPART_RELATED,
    OCTET_STREAM,
    MediaType,
    MultipartError,
    content_type,
    encode_parts,
    new_boundary,
    parse_accept,
)

LOG = logging.getLogger(__name__)
router = APIRouter()
Context = Annotated[DicomWebContext, Depends(get_dicomweb)]
STUDY = "/studies/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{sop}"
ANY_SYNTAX = "*"


def _held(
    context: DicomWebContext, study: str, series: str | None = None, sop: str | None = None
) -> list[HeldObject]:
    """The objects a WADO-RS path names.

    Raises:
        HTTPException: 400 for a malformed UID, 404 if the node holds none.
    """
    scope = Scope(
        studies=[path_uid(study, "Study Instance UID")],
        series=None if series is None else [path_uid(series, "Series Instance UID")],
        sops=None if sop is None else [path_uid(sop, "SOP Instance UID")],
    )
    with context.sessions() as session:
        found = held_objects(session, scope)
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the node holds no such object")
    return found


def _accepted(request: Request, part_type: str) -> list[MediaType]:
    """The Accept header's ranges that take ``multipart/related`` parts of ``part_type``.

    Raises:
        HTTPException: 400 if the header is malformed, 406 if no range takes them.
    """
    try:
        ranges = parse_accept(request.headers.get("accept"))
    except MultipartError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "malformed Accept header") from exc
    taken = [
        r
        for r in ranges
        if r.type in ("*", "*/*", "multipart/*")
        or (
            r.type == MULTIPART_RELATED
            and MediaType(r.parameters.get("type", part_type).lower()).matches(part_type)
        )
    ]
    if not taken:
        raise HTTPException(
            status.HTTP_406_NOT_ACCEPTABLE,
            f'this resource is {MULTIPART_RELATED}; type="{part_type}"',
        )
    return taken


def _multipart(parts: Iterator[tuple[str, bytes]], part_type: str) -> StreamingResponse:
    boundary = new_boundary()
    return StreamingResponse(
        encode_parts(parts, boundary), media_type=content_type(part_type, boundary)
    )


def _files(context: DicomWebContext, objects: list[HeldObject]) -> Iterator[tuple[str, bytes]]:
    for held in objects:
        try:
            data = context.spool.path_of(held.path).read_bytes()
        except FileNotFoundError:
            LOG.warning("a held object's file is missing from the spool; not sent")
            continue
        yield DICOM, data


def _retrieve(request: Request, context: DicomWebContext, objects: list[HeldObject]) -> Response:
    _accepted(request, DICOM)
    return _multipart(_files(context, objects), DICOM)


def _metadata(request: Request, context: DicomWebContext, objects: list[HeldObject]) -> Response:
    documents = []
    for held in objects:
        base = retrieve_url(request, held.study_uid, held.series_uid, held.sop_uid)
        path = context.spool.path_of(held.path)
        try:
            documents.append(metadata(path, _bulk_uri(base)))
        except FileNotFoundError:
            LOG.warning("a held object's file is missing from the spool; no metadata")
    return Response(json.dumps(documents), media_type=DICOM_JSON)


def _bulk_uri(instance_url: str) -> Callable[[BaseTag], str]:
    return lambda tag: f"{instance_url}/bulkdata/{tag:08X}"


@router.get(STUDY, summary="WADO-RS: retrieve a study")
def retrieve_study(request: Request, study: str, context: Context, _: Viewer) -> Response:
    """Every object of ``study`` (images and the node's results)."""
    return _retrieve(request, context, _held(context, study))


@router.get(SERIES, summary="WADO-RS: retrieve a series")
def retrieve_series(
    request: Request, study: str, series: str, context: Context, _: Viewer
) -> Response:
    """Every object of ``series``."""
    return _retrieve(request, context, _held(context, study, series))


@router.get(INSTANCE, summary="WADO-RS: retrieve an instance")
def retrieve_instance(
    request: Request, study: str, series: str, sop: str, context: Context, _: Viewer
) -> Response:
    """One object."""
    return _retrieve(request, context, _held(context, study, series, sop))


@router.get(STUDY + "/metadata", summary="WADO-RS: a study's metadata")
def study_metadata(request: Request, study: str, context: Context, _: Viewer) -> Response:
    """The DICOM JSON of every object of ``study``."""
    return _metadata(request, context, _held(context, study))


@router.get(SERIES + "/metadata", summary="WADO-RS: a series' metadata")
def series_metadata(
    request: Request, study: str, series: str, context: Context, _: Viewer
) -> Response:
    """The DICOM JSON of every object of ``series``."""
    return _metadata(request, context, _held(context, study, series))


@router.get(INSTANCE + "/metadata", summary="WADO-RS: an instance's metadata")
def instance_metadata(
    request: Request, study: str, series: str, sop: str, context: Context, _: Viewer
) -> Response:
    """The DICOM JSON of one object."""
    return _metadata(request, context, _held(context, study, series, sop))


@router.get(INSTANCE + "/frames/{frame_list}", summary="WADO-RS: frames of an instance")
def retrieve_frames(
    request: Request,
    study: str,
    series: str,
    sop: str,
    frame_list: str,
    context: Context,
    _: Viewer,
) -> Response:
    """Frames (1-based, comma-separated) of an image, native unless any syntax is accepted."""
    numbers = _frame_numbers(frame_list)
    accepted = _accepted(request, OCTET_STREAM)
    as_stored = any(r.parameters.get("transfer-syntax") == ANY_SYNTAX for r in accepted)
    held = _held(context, study, series, sop)[0]
    ds = dcmread(_existing(context, held))
    try:
        found = frames(ds, numbers, as_stored=as_stored)
    except NoSuchFrameError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except FramesNotDecodableError as exc:
        raise HTTPException(status.HTTP_406_NOT_ACCEPTABLE, str(exc)) from exc
    part_type = f"{OCTET_STREAM}; transfer-syntax={found.transfer_syntax}"
    return _multipart(((part_type, frame) for frame in found.content), OCTET_STREAM)


@router.get(INSTANCE + "/bulkdata/{tag}", summary="WADO-RS: bulk data of an instance")
def retrieve_bulk_data(
    request: Request,
    study: str,
    series: str,
    sop: str,
    tag: str,
    context: Context,
    _: Viewer,
) -> Response:
    """The value of a top-level binary element (the ``BulkDataURI`` of its metadata)."""
    element = _tag(tag)
    _accepted(request, OCTET_STREAM)
    held = _held(context, study, series, sop)[0]
    value = bulk_value(_existing(context, held), element)
    if value is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such bulk data element")
    return _multipart(iter([(OCTET_STREAM, value)]), OCTET_STREAM)


def _existing(context: DicomWebContext, held: HeldObject) -> Path:
    path = context.spool.path_of(held.path)
    if not path.exists():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the object's file is not in the spool")
    return path


def _frame_numbers(frame_list: str) -> list[int]:
    items = frame_list.split(",")
    if not all(item.isdigit() for item in items):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "frames: comma-separated numbers")
    return [int(item) for item in items]


def _tag(value: str) -> BaseTag:
    if len(value) != 8 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "bulk data tag: eight hex digits")
    return Tag(int(value, 16))
