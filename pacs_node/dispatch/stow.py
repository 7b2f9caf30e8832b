"""STOW-RS sender: encoded objects to a DICOMweb server, one multipart request per study.

Each object's outcome is read from the server's answer: 200 stored them all; 202 and 409 list the
refused ones in FailedSOPSequence with their FailureReason. The credentials travel only in the
``Authorization`` header; https certificates are always verified; proxies and other settings
from the environment are not used. Log lines name the destination, never a UID or a header.
"""

from __future__ import annotations

import io
import logging
import secrets
import ssl
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pydicom

from pacs_node.destinations import Destination
from pacs_node.dispatch.attempt import Attempt

LOG = logging.getLogger(__name__)

FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
AUTHENTICATION_REFUSED = frozenset({401, 403})
PARTLY_STORED = frozenset({202, 409})
"""Answers that list which objects were refused (FailedSOPSequence) and which stored."""


def send_studies(
    destination: Destination, paths: Sequence[Path], *, timeout: float = 60.0
) -> list[Attempt]:
    """POST the files to ``{url}/studies``, one multipart/related request per study.

    Args:
        destination: A ``dicomweb`` destination (URL, credentials, CA bundle).
        paths: DICOM Part 10 files.
        timeout: Connect, read and write timeout in seconds.

    Returns:
        One outcome per path, in order; nothing raises for a server that is down or refuses.

    Raises:
        OSError: if a file cannot be read.
        pydicom.errors.InvalidDicomError: if a file is not DICOM.
    """
    files = [path.read_bytes() for path in paths]
    identifiers = [_identifiers(data) for data in files]
    studies: dict[str, list[int]] = defaultdict(list)
    for index, (study_uid, _) in enumerate(identifiers):
        studies[study_uid].append(index)
    try:
        client = _client(destination, timeout)
    except OSError as exc:
        error = f"cannot load the CA certificates: {exc.strerror}"
        return _failed(destination, len(files), None, error)
    outcomes: dict[int, Attempt] = {}
    with client:
        for indices in studies.values():
            study_files = [files[i] for i in indices]
            sop_uids = [identifiers[i][1] for i in indices]
            sent = _post(client, destination, study_files, sop_uids)
            outcomes.update(zip(indices, sent, strict=True))
    return [outcomes[index] for index in range(len(files))]


def _identifiers(data: bytes) -> tuple[str, str]:
    """The Study and SOP Instance UIDs of an encoded object."""
    dataset = pydicom.dcmread(
        io.BytesIO(data),
        stop_before_pixels=True,
        specific_tags=["StudyInstanceUID", "SOPInstanceUID"],
    )
    return str(dataset.StudyInstanceUID), str(dataset.SOPInstanceUID)


def _client(destination: Destination, timeout: float) -> httpx.Client:
    """An HTTP client for ``destination``: its credentials, its CA bundle, nothing from the
    environment.

    Raises:
        OSError: if the CA bundle cannot be loaded.
    """
    verify: ssl.SSLContext | bool = True
    if destination.ca_file is not None:
        verify = ssl.create_default_context(cafile=destination.ca_file)
    headers = {"Accept": "application/dicom+json"}
    if destination.authorization is not None:
        headers["Authorization"] = destination.authorization.reveal()
    return httpx.Client(
        headers=headers, timeout=timeout, verify=verify, trust_env=False, follow_redirects=False
    )


def _post(
    client: httpx.Client, destination: Destination, files: list[bytes], uids: list[str]
) -> list[Attempt]:
    """Store one study's objects in one request; one outcome per object."""
    # 128 random bits: a boundary that occurs in the data by chance is not a concern.
    boundary = secrets.token_hex(16)
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    try:
        response = client.post(
            f"{destination.url}/studies",
            content=_multipart(files, boundary),
            headers={"Content-Type": content_type},
        )
    except httpx.TimeoutException:
        return _failed(destination, len(files), None, "no answer in time (timeout)")
    except httpx.ConnectError as exc:
        return _failed(destination, len(files), None, f"cannot connect: {exc}")
    except httpx.HTTPError as exc:
        return _failed(destination, len(files), None, f"HTTP exchange failed: {type(exc).__name__}")
    return _outcomes(destination, response, uids)


def _multipart(files: list[bytes], boundary: str) -> bytes:
    """A multipart/related body of ``application/dicom`` parts."""
    delimiter = f"--{boundary}".encode()
    parts = [delimiter + b"\r\nContent-Type: application/dicom\r\n\r\n" + f for f in files]
    return b"\r\n".join(parts) + b"\r\n" + delimiter + b"--\r\n"


def _outcomes(destination: Destination, response: httpx.Response, uids: list[str]) -> list[Attempt]:
    """Each object's outcome from the server's answer."""
    code = response.status_code
    status = f"HTTP {code}"
    if code in AUTHENTICATION_REFUSED:
        return _failed(destination, len(uids), status, f"authentication refused ({status})")
    if code >= 500:
        return _failed(destination, len(uids), status, f"server error ({status})")
    if code != 200 and code not in PARTLY_STORED:
        return _failed(destination, len(uids), status, f"refused ({status})")
    refused, stored = _answer(response)
    if refused:
        LOG.warning("STOW-RS to %s: %d objects refused (%s)", destination, len(refused), status)
    attempts = []
    for uid in uids:
        if uid in refused:
            attempts.append(Attempt(False, refused[uid] or status, f"refused by server ({status})"))
        elif code == 200 or uid in stored:
            attempts.append(Attempt(True, status))
        else:
            attempts.append(Attempt(False, status, f"not confirmed by server ({status})"))
    return attempts


def _failed(destination: Destination, count: int, status: str | None, error: str) -> list[Attempt]:
    """``count`` failed outcomes, logged once (the destination and the error, nothing else)."""
    LOG.warning("STOW-RS to %s: %s", destination, error)
    return [Attempt(False, status, error) for _ in range(count)]


def _answer(response: httpx.Response) -> tuple[dict[str, str | None], set[str]]:
    """The refused objects (SOP Instance UID to FailureReason as ``0xA700``) and the stored ones
    that a DICOM JSON answer lists; nothing from an answer that is not one."""
    try:
        body = response.json()
    except ValueError:
        return {}, set()
    if isinstance(body, list):  # some servers answer an array of one data set
        body = body[0] if body else {}
    refused: dict[str, str | None] = {}
    for item in _values(body, FAILED_SOP_SEQUENCE):
        uid = _first(item, REFERENCED_SOP_INSTANCE_UID)
        reason = _first(item, FAILURE_REASON)
        if isinstance(uid, str):
            refused[uid] = f"0x{reason:04X}" if isinstance(reason, int) else None
    stored = {
        _first(item, REFERENCED_SOP_INSTANCE_UID) for item in _values(body, REFERENCED_SOP_SEQUENCE)
    }
    return refused, {uid for uid in stored if isinstance(uid, str)}


def _values(dataset: object, tag: str) -> list[Any]:
    """The ``Value`` list of the element ``tag`` of a DICOM JSON data set (empty if absent)."""
    element = dataset.get(tag) if isinstance(dataset, Mapping) else None
    values = element.get("Value") if isinstance(element, Mapping) else None
    return values if isinstance(values, list) else []


def _first(dataset: object, tag: str) -> Any:
    """The first value of the element ``tag`` (None if absent)."""
    return next(iter(_values(dataset, tag)), None)
