"""C-STORE sender: encoded objects to one DICOM destination over one association.

Each object's outcome is reported separately, so only the objects that failed are sent again.
Presentation contexts are proposed for exactly the SOP classes and transfer syntaxes of the files,
and Nagle's algorithm is turned off on the association's socket.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pynetdicom import AE, build_context, evt
from pynetdicom.association import Association
from pynetdicom.events import Event

from pacs_node.destinations import Destination
from pacs_node.dispatch.attempt import Attempt

LOG = logging.getLogger(__name__)

SUCCESS = 0x0000
WARNING_STATUSES = frozenset({0x0001, 0xB000, 0xB006, 0xB007})
"""Stored with a warning (coercion, elements discarded): the PACS has the object."""


def _no_delay(event: Event) -> None:
    sock = event.assoc.dul.socket.socket if event.assoc.dul.socket is not None else None
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _unreachable(destination: Destination, timeout: float) -> str | None:
    """Why a TCP connection to the peer fails, or None when it opens.

    Checked first because pynetdicom reports a refused connection from its own thread.
    """
    try:
        with socket.create_connection((destination.host, destination.port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot connect: {exc}"


def send_files(
    destination: Destination,
    paths: Sequence[Path],
    *,
    calling_ae: str,
    timeout: float = 60.0,
) -> list[Attempt]:
    """C-STORE every file to ``destination`` over one association.

    Args:
        destination: The peer (AE title, host, port).
        paths: DICOM Part 10 files.
        calling_ae: Our AE title.
        timeout: ACSE, DIMSE and network timeout in seconds.

    Returns:
        One outcome per path, in order. When the association cannot be opened, every outcome
        says so; nothing raises for a peer that is down or refuses.

    Raises:
        OSError: if a file cannot be read.
        pydicom.errors.InvalidDicomError: if a file is not DICOM.
    """
    datasets = [pydicom.dcmread(path) for path in paths]
    unreachable = _unreachable(destination, timeout)
    if unreachable is not None:
        LOG.warning("%s is unreachable: %s", destination, unreachable)
        return [Attempt(False, None, unreachable) for _ in paths]
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    wanted = sorted({(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets})
    ae.requested_contexts = [build_context(sop, syntax) for sop, syntax in wanted]
    assoc = ae.associate(
        destination.host,
        destination.port,
        ae_title=destination.ae_title,
        evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay)],
    )
    if not assoc.is_established:
        reason = "association rejected" if assoc.is_rejected else "association failed"
        LOG.warning("%s to %s", reason, destination)
        return [Attempt(False, None, reason) for _ in paths]
    outcomes = []
    try:
        for dataset in datasets:
            outcomes.append(_store(assoc, dataset))
    finally:
        if assoc.is_established:
            assoc.release()
    return outcomes


def _store(assoc: Association, dataset: pydicom.Dataset) -> Attempt:
    if not assoc.is_established:
        return Attempt(False, None, "association lost")
    try:
        status = assoc.send_c_store(dataset)
    except (RuntimeError, ValueError, OSError) as exc:
        return Attempt(False, None, f"C-STORE failed: {type(exc).__name__}")
    if "Status" not in status:
        return Attempt(False, None, "no response (timeout or abort)")
    code = int(status.Status)
    stored = code == SUCCESS or code in WARNING_STATUSES
    return Attempt(stored, f"0x{code:04X}", None if stored else "refused by peer")
