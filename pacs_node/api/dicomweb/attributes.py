"""Attributes of held objects, read from their files: headers for searches (cached, without
pixel data) and the DICOM JSON metadata of WADO-RS (bulk data as ``BulkDataURI``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import BaseTag

HEADER_CACHE_SIZE = 2048
"""Headers kept in memory (files are never rewritten with other content: keep-the-first)."""
BULK_THRESHOLD = 1024
"""Binary top-level values longer than this are sent as ``BulkDataURI``, not inline."""
AVAILABLE_TRANSFER_SYNTAX = "00083002"
"""Available Transfer Syntax UID: the syntax the object is stored (and retrieved) in."""
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


def header(path: Path) -> Dataset:
    """The data set of a held file without its pixel data; empty if the file is gone.

    The returned data set is shared: callers must not change it.

    Raises:
        pydicom.errors.InvalidDicomError: if the file is not DICOM.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        return Dataset()
    return _cached_header(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=HEADER_CACHE_SIZE)
def _cached_header(path: Path, mtime_ns: int, size: int) -> Dataset:
    """``mtime_ns`` and ``size`` are part of the cache key only."""
    ds = dcmread(path, stop_before_pixels=True)
    for _ in ds.iterall():  # convert every element now, once, not on every search
        pass
    return ds


def pick(source: Dataset, tags: list[BaseTag], into: Dataset) -> None:
    """Copy the top-level elements ``tags`` of ``source`` that it has into ``into``."""
    for tag in tags:
        if tag in source:
            into.add(source[tag])


def plain_tags(source: Dataset) -> list[BaseTag]:
    """The top-level tags of ``source`` except binary ones (``includefield=all``)."""
    return [elem.tag for elem in source if elem.VR not in BULK_VRS]


def metadata(path: Path, bulk_uri: Callable[[BaseTag], str]) -> dict[str, Any]:
    """The DICOM JSON of a held file; top-level binary values over :data:`BULK_THRESHOLD` bytes
    (pixel data always) are a ``BulkDataURI`` made by ``bulk_uri``, nested ones inline.

    Raises:
        OSError: if the file cannot be read.
        pydicom.errors.InvalidDicomError: if it is not DICOM.
    """
    ds = dcmread(path, defer_size=BULK_THRESHOLD)
    out: dict[str, Any] = {}
    for raw in ds.elements():
        tag = BaseTag(raw.tag)
        key = f"{tag:08X}"
        if isinstance(raw, RawDataElement) and raw.value is None and raw.VR in BULK_VRS:
            out[key] = {"vr": raw.VR, "BulkDataURI": bulk_uri(tag)}  # deferred: never read
            continue
        elem = ds[tag]
        if _is_bulk(elem):
            out[key] = {"vr": elem.VR, "BulkDataURI": bulk_uri(tag)}
        else:
            out[key] = elem.to_json_dict(None, BULK_THRESHOLD)
    out[AVAILABLE_TRANSFER_SYNTAX] = {"vr": "UI", "Value": [str(ds.file_meta.TransferSyntaxUID)]}
    return out


def _is_bulk(elem: DataElement) -> bool:
    if elem.VR not in BULK_VRS or elem.value is None:
        return False
    return elem.tag == 0x7FE00010 or len(elem.value) > BULK_THRESHOLD


def bulk_value(path: Path, tag: BaseTag) -> bytes | None:
    """The value of a top-level binary element of a held file (None if it has none).

    Raises:
        OSError: if the file cannot be read.
        pydicom.errors.InvalidDicomError: if it is not DICOM.
    """
    ds = dcmread(path)
    if tag not in ds:
        return None
    elem = ds[tag]
    if elem.VR not in BULK_VRS or not isinstance(elem.value, bytes):
        return None
    return elem.value
