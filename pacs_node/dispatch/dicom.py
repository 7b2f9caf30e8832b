"""C-STORE sender: encoded objects to one DICOM destination over one association.

Each object's outcome is reported separately, so only the objects that failed are sent again.
Presentation contexts are proposed for exactly the SOP classes and transfer syntaxes of the files,
and Nagle's algorithm is turned off on the association's socket. A destination flagged
``/commit`` is then asked for storage commitment of the stored objects on the same association
(:mod:`.commitment`).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
from pynetdicom import AE, build_context, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from pacs_node.destinations import Destination
from pacs_node.dispatch.attempt import Attempt
from pacs_node.dispatch.commitment import (
    CommitmentJournal,
    new_transaction_uid,
    receive_report,
    request_commitment,
    supports_commitment,
)

LOG = logging.getLogger(__name__)

SUCCESS = 0x0000
WARNING_STATUSES = frozenset({0x0001, 0xB000, 0xB006, 0xB007})
"""Stored with a warning (coercion, elements discarded): the PACS has the object."""
REPORT_WAIT_SECONDS = 1.0
"""How long the association stays open after an N-ACTION for a PACS that reports storage
commitment on it (most open a new association to the node's SCP instead)."""


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
    uid_root: str = "",
    commitments: CommitmentJournal | None = None,
) -> list[Attempt]:
    """C-STORE every file to ``destination`` over one association; for a destination flagged
    ``/commit``, then ask it to commit the stored objects.

    Args:
        destination: The peer (AE title, host, port).
        paths: DICOM Part 10 files.
        calling_ae: Our AE title.
        timeout: ACSE, DIMSE and network timeout in seconds.
        uid_root: The site's UID root for Transaction UIDs ("" = pydicom's).
        commitments: Where commitment requests and reports are recorded (needed for a
            destination flagged ``/commit``).

    Returns:
        One outcome per path, in order. When the association cannot be opened, every outcome
        says so; nothing raises for a peer that is down or refuses.

    Raises:
        OSError: if a file cannot be read.
        pydicom.errors.InvalidDicomError: if a file is not DICOM.
        ValueError: if ``destination`` asks for storage commitment and no journal is given.
        sqlalchemy.exc.SQLAlchemyError: if the journal cannot record a commitment request.
    """
    journal = commitments if destination.commit else None
    if destination.commit and journal is None:
        raise ValueError(f"storage commitment to {destination.name} needs a journal")
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
    handlers: list[Any] = [(evt.EVT_CONN_OPEN, _no_delay)]
    reported = threading.Event()
    if journal is not None:
        ae.requested_contexts.append(build_context(StorageCommitmentPushModel))
        handlers.append((evt.EVT_N_EVENT_REPORT, _on_report, [journal, reported]))
    assoc = ae.associate(
        destination.host, destination.port, ae_title=destination.ae_title, evt_handlers=handlers
    )
    if not assoc.is_established:
        reason = "association rejected" if assoc.is_rejected else "association failed"
        LOG.warning("%s to %s", reason, destination)
        return [Attempt(False, None, reason) for _ in paths]
    outcomes = []
    try:
        for dataset in datasets:
            outcomes.append(_store(assoc, dataset))
        if journal is not None:
            outcomes = _commit(assoc, destination, datasets, outcomes, journal, uid_root)
            if any(o.commitment_uid for o in outcomes):
                reported.wait(min(REPORT_WAIT_SECONDS, timeout))
    finally:
        if assoc.is_established:
            assoc.release()
    return outcomes


def _commit(
    assoc: Association,
    destination: Destination,
    datasets: Sequence[pydicom.Dataset],
    outcomes: list[Attempt],
    journal: CommitmentJournal,
    uid_root: str,
) -> list[Attempt]:
    """Ask for storage commitment of the stored objects (recorded first, under a fresh
    Transaction UID); their outcomes become commitment requests, or failures."""
    stored = [d for d, o in zip(datasets, outcomes, strict=True) if o.delivered]
    if not stored:
        return outcomes
    transaction_uid = new_transaction_uid(uid_root)
    status, error = _request(assoc, destination, stored, journal, transaction_uid)
    if error is not None:
        LOG.warning("%s: %s", destination, error)
        return [Attempt(False, status, error) if o.delivered else o for o in outcomes]
    return [Attempt(True, o.status, None, transaction_uid) if o.delivered else o for o in outcomes]


def _request(
    assoc: Association,
    destination: Destination,
    stored: Sequence[pydicom.Dataset],
    journal: CommitmentJournal,
    transaction_uid: str,
) -> tuple[str | None, str | None]:
    """Record the request, then send it; the peer's status and why it failed (None: accepted)."""
    if not assoc.is_established:
        return None, "association lost before the storage commitment request"
    if not supports_commitment(assoc):
        return None, "the peer does not support storage commitment"
    journal.requested(destination.name, transaction_uid, [d.SOPInstanceUID for d in stored])
    return request_commitment(assoc, transaction_uid, stored)


def _on_report(
    event: Event, journal: CommitmentJournal, reported: threading.Event
) -> tuple[int, pydicom.Dataset | None]:
    """An N-EVENT-REPORT on the sending association: record it, stop waiting."""
    answer = receive_report(event, journal)
    reported.set()
    return answer


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
