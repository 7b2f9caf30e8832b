"""DIMSE and association event handlers: plain functions, dependencies passed as handler arguments.

A C-STORE is answered with success only after the instance is on disk (fsynced) and recorded
in the database; the checks, the store and the refusals (a named status, a log line and a
``receive_errors`` row) are :mod:`pacs_node.intake`'s, shared with STOW-RS. No exception escapes
into pynetdicom. Each association and C-ECHO is logged at INFO (calling AE, peer address,
outcome, counts). Logs and refusal reasons carry no patient data and no UIDs.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, defaultdict
from typing import cast

from pydicom import Dataset
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from pacs_node.db.ledger import InstanceLedger
from pacs_node.domain import InstanceOrigin
from pacs_node.instance_store import InstanceStore
from pacs_node.intake import REFUSED, Check, Intake, RefusedError, Sender, summary, tally_key
from pacs_node.scp.statuses import StoreStatus
from pacs_node.spool import Spool

LOG = logging.getLogger(__name__)


class Associations:
    """What each live association has done: the studies it sent source images to (for the
    release trigger) and counts of its outcomes (for its closing log line)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._studies: defaultdict[int, set[str]] = defaultdict(set)
        self._counts: defaultdict[int, Counter[str]] = defaultdict(Counter)

    def add_study(self, association: object, study_uid: str) -> None:
        """Remember that ``association`` sent a source image of ``study_uid``."""
        with self._lock:
            self._studies[id(association)].add(study_uid)

    def count(self, association: object, outcome: str) -> None:
        """Count one outcome (stored, derived, refused, ...) of ``association``."""
        with self._lock:
            self._counts[id(association)][outcome] += 1

    def pop(self, association: object) -> tuple[set[str], Counter[str]]:
        """Forget an association, returning its studies and counts."""
        with self._lock:
            key = id(association)
            return self._studies.pop(key, set()), self._counts.pop(key, Counter())


def _peer(event: Event) -> tuple[str, str]:
    requestor = event.assoc.requestor
    return requestor.ae_title.strip(), f"{requestor.address}:{requestor.port}"


def handle_echo(event: Event) -> int:
    """C-ECHO: always success, logged."""
    calling_ae, peer = _peer(event)
    LOG.info("C-ECHO from %s at %s: success", calling_ae, peer)
    return StoreStatus.SUCCESS


def handle_accepted(event: Event) -> None:
    """Association accepted: log who it is."""
    calling_ae, peer = _peer(event)
    LOG.info("association from %s at %s accepted", calling_ae, peer)


def _event_dataset(event: Event) -> Dataset:
    ds = event.dataset
    ds.file_meta = event.file_meta
    return ds


def _matches_request(event: Event) -> Check:
    """The C-STORE's own check: the data set's SOP Class and Instance UIDs are the request's."""
    request = cast(C_STORE, event.request)

    def check(ds: Dataset) -> None:
        if ds.SOPInstanceUID != request.AffectedSOPInstanceUID:
            raise RefusedError(
                StoreStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                "SOP Instance UID in data set differs from the C-STORE request",
            )
        if ds.SOPClassUID != request.AffectedSOPClassUID:
            raise RefusedError(
                StoreStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                "SOP Class UID in data set differs from the C-STORE request",
            )

    return check


def handle_store(
    event: Event,
    spool: Spool,
    store: InstanceStore,
    ledger: InstanceLedger,
    associations: Associations,
) -> int:
    """C-STORE: validate, store durably (:class:`~pacs_node.intake.Intake`), then answer."""
    calling_ae, peer = _peer(event)
    received = Intake(spool, store, ledger).receive(
        lambda: _event_dataset(event),
        lambda: event.encoded_dataset(include_meta=True),
        Sender(calling_ae, peer),
        check=_matches_request(event),
        claimed_uid=str(getattr(event.request, "AffectedSOPInstanceUID", None) or ""),
    )
    if received.stored is None or received.record is None:
        associations.count(event.assoc, REFUSED)
        return received.status
    if received.stored.origin is InstanceOrigin.SOURCE:
        associations.add_study(event.assoc, received.record.study_instance_uid)
    associations.count(event.assoc, tally_key(received.stored))
    return received.status


def handle_released(event: Event, ledger: InstanceLedger, associations: Associations) -> None:
    """A-RELEASE: log what the association did; note the release on the studies it sent
    source images to (the early completion trigger)."""
    sent, counts = associations.pop(event.assoc)
    calling_ae, peer = _peer(event)
    LOG.info("association from %s at %s released: %s", calling_ae, peer, summary(counts))
    try:
        ledger.mark_released(sent)
    except Exception:
        LOG.exception("could not record association release")


def handle_aborted(event: Event, associations: Associations) -> None:
    """Aborted without release: log it and forget it (the quiet period will apply)."""
    _, counts = associations.pop(event.assoc)
    calling_ae, peer = _peer(event)
    LOG.info("association from %s at %s aborted: %s", calling_ae, peer, summary(counts))


def _rejection_reason(event: Event) -> str:
    """Why pynetdicom's acceptor rejected the association (the checks of its ACSE)."""
    ae, request = event.assoc.ae, event.assoc.requestor.primitive
    if request is None:
        return "no association request"
    calling, called = str(request.calling_ae_title).strip(), str(request.called_ae_title).strip()
    if ae.require_calling_aet and calling not in [a.strip() for a in ae.require_calling_aet]:
        return f"calling AE {calling} is not allowed"
    if ae.require_called_aet and called != event.assoc.acceptor.ae_title.strip():
        return f"called AE {called} is not this node's AE title"
    return "too many associations at once"


def handle_rejected(event: Event, ledger: InstanceLedger) -> None:
    """Association rejected (calling AE not allowed, called AE not ours, limit reached): log it
    and keep a row."""
    calling_ae, peer = _peer(event)
    reason = f"association rejected: {_rejection_reason(event)}"
    LOG.warning("%s (from %s at %s)", reason, calling_ae, peer)
    try:
        ledger.record_rejection(
            status=0,
            reason=reason,
            calling_ae=calling_ae,
            peer_address=peer,
            sop_instance_uid=None,
        )
    except Exception:
        LOG.exception("could not record a rejected association")
