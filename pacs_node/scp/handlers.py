"""DIMSE and association event handlers: plain functions, dependencies passed as handler arguments.

A C-STORE is answered with success only after the instance is on disk (fsynced) and recorded
in the database (:class:`~pacs_node.instance_store.InstanceStore`). Every refusal is a named
status, a log line and a ``receive_errors`` row; no exception escapes into pynetdicom. Each
association and C-ECHO is logged at INFO (calling AE, peer address, outcome, counts). Logs and
refusal reasons carry no patient data and no UIDs.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, defaultdict
from typing import cast

from pydicom import Dataset
from pydicom.encaps import parse_basic_offsets
from pydicom.uid import UID
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from pacs_node.db.ledger import InstanceLedger, InstanceRecord
from pacs_node.domain import InstanceOrigin
from pacs_node.errors import ConflictingInstanceError, InvalidIdentifierError, SpoolFullError
from pacs_node.instance_store import InstanceStore, StoreOutcome
from pacs_node.logs import redact
from pacs_node.origin import is_derived_sop_class
from pacs_node.scp.statuses import StoreStatus
from pacs_node.selection import series_attributes
from pacs_node.spool import Spool
from pacs_node.validation import validate_uid

LOG = logging.getLogger(__name__)

_ITEM_TAG = b"\xfe\xff\x00\xe0"
"""(FFFE,E000) little endian: the first bytes of encapsulated pixel data (PS3.5 A.4)."""


class RefusedError(Exception):
    """Internal: a store refused with ``status`` for ``reason``."""

    def __init__(self, status: StoreStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


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


def _decode(event: Event) -> Dataset:
    try:
        ds = event.dataset
        ds.file_meta = event.file_meta
        # Force every top-level element (and nested sequence) to be parsed now, so a
        # truncated or corrupt stream is refused here rather than found by a worker later.
        for _ in ds.iterall():
            pass
    except Exception as exc:
        raise RefusedError(
            StoreStatus.CANNOT_UNDERSTAND, f"data set cannot be decoded: {redact(str(exc))}"
        ) from exc
    return ds


def _expected_pixel_bytes(ds: Dataset) -> int | None:
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        return (
            int(ds.Rows)
            * int(ds.Columns)
            * int(ds.get("SamplesPerPixel", 1))
            * frames
            * int(ds.BitsAllocated)
            // 8
        )
    except (AttributeError, TypeError, ValueError):
        return None


def _check_pixel_data(ds: Dataset) -> None:
    """Pixel data must fit the transfer syntax: as long as the image needs when native,
    encapsulated (undefined length, items with a basic offset table first) when compressed."""
    if "PixelData" not in ds:
        return
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    element = ds["PixelData"]
    value = element.value or b""
    if syntax.is_encapsulated:
        if not element.is_undefined_length or not value.startswith(_ITEM_TAG):
            raise RefusedError(
                StoreStatus.CANNOT_UNDERSTAND,
                f"pixel data is not encapsulated as {syntax.name} requires",
            )
        try:
            parse_basic_offsets(value)
        except (ValueError, TypeError, IndexError) as exc:
            raise RefusedError(
                StoreStatus.CANNOT_UNDERSTAND, "encapsulated pixel data is malformed"
            ) from exc
        return
    expected, actual = _expected_pixel_bytes(ds), len(value)
    if expected is None or actual < expected:
        raise RefusedError(
            StoreStatus.CANNOT_UNDERSTAND,
            f"pixel data truncated or undescribed ({actual} bytes, expected {expected})",
        )


def _check(ds: Dataset, event: Event) -> None:
    request = cast(C_STORE, event.request)
    try:
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
            validate_uid(ds.get(keyword), keyword)
    except InvalidIdentifierError as exc:
        raise RefusedError(StoreStatus.CANNOT_UNDERSTAND, str(exc)) from exc
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
    _check_pixel_data(ds)


def _describe(ds: Dataset, spool: Spool, calling_ae: str) -> InstanceRecord:
    """The ledger record of a checked data set (its spool path, not yet written)."""

    def number(keyword: str) -> int | None:
        try:
            value = ds.get(keyword)
            return None if value in (None, "") else int(value)
        except (TypeError, ValueError):
            return None

    return InstanceRecord(
        study_instance_uid=ds.StudyInstanceUID,
        series_instance_uid=ds.SeriesInstanceUID,
        sop_instance_uid=ds.SOPInstanceUID,
        sop_class_uid=ds.SOPClassUID,
        transfer_syntax_uid=ds.file_meta.TransferSyntaxUID,
        relative_path=spool.relative_path(
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        ),
        size_bytes=0,
        instance_number=number("InstanceNumber"),
        series_number=number("SeriesNumber"),
        patient_id=str(ds.get("PatientID", "") or "") or None,
        accession_number=str(ds.get("AccessionNumber", "") or "") or None,
        calling_ae=calling_ae,
        series_attributes=series_attributes(ds),
        origin=(
            InstanceOrigin.DERIVED
            if is_derived_sop_class(ds.SOPClassUID)
            else InstanceOrigin.SOURCE
        ),
    )


def _understood(event: Event, spool: Spool, calling_ae: str) -> InstanceRecord:
    """Decode and check the request's data set, and describe it for the ledger.

    Raises:
        RefusedError: with the status to answer, for anything the node cannot take.
    """
    try:
        ds = _decode(event)
        _check(ds, event)
        return _describe(ds, spool, calling_ae)
    except RefusedError:
        raise
    except Exception as exc:  # a value pydicom parsed but that makes no sense (empty, wrong VR)
        raise RefusedError(
            StoreStatus.CANNOT_UNDERSTAND, f"data set has unusable values ({type(exc).__name__})"
        ) from exc


def handle_store(
    event: Event,
    spool: Spool,
    store: InstanceStore,
    ledger: InstanceLedger,
    associations: Associations,
) -> int:
    """C-STORE: validate, store durably (:class:`InstanceStore`), then answer success."""
    calling_ae, peer = _peer(event)
    sent_uid = str(getattr(event.request, "AffectedSOPInstanceUID", None) or "")
    try:
        try:
            spool.check_space()
        except SpoolFullError as exc:
            raise RefusedError(StoreStatus.OUT_OF_RESOURCES, str(exc)) from exc
        record = _understood(event, spool, calling_ae)
        try:
            stored = store.store(record, event.encoded_dataset(include_meta=True))
        except SpoolFullError as exc:
            raise RefusedError(StoreStatus.OUT_OF_RESOURCES, str(exc)) from exc
        except ConflictingInstanceError as exc:
            raise RefusedError(StoreStatus.DUPLICATE_SOP_INSTANCE, str(exc)) from exc
        except OSError as exc:
            raise RefusedError(
                StoreStatus.OUT_OF_RESOURCES, f"spool write failed: {exc.strerror}"
            ) from exc
    except RefusedError as refusal:
        associations.count(event.assoc, "refused")
        return _refuse(ledger, refusal.status, refusal.reason, calling_ae, peer, sent_uid)
    except Exception as exc:  # the database or something unforeseen: never crash the node
        LOG.exception("C-STORE processing failed")
        associations.count(event.assoc, "refused")
        return _refuse(
            ledger,
            StoreStatus.PROCESSING_FAILURE,
            f"processing failed: {type(exc).__name__}",
            calling_ae,
            peer,
            sent_uid,
        )
    if stored.outcome is StoreOutcome.DIFFERENT_COPY_IGNORED:
        LOG.warning(
            "kept the first copy of an instance: a different copy from %s at %s was not stored",
            calling_ae,
            peer,
        )
    if stored.origin is InstanceOrigin.SOURCE:
        associations.add_study(event.assoc, record.study_instance_uid)
    associations.count(event.assoc, _tally_key(stored.outcome, stored.origin))
    return StoreStatus.SUCCESS


def _tally_key(outcome: StoreOutcome, origin: InstanceOrigin) -> str:
    if outcome is not StoreOutcome.STORED:
        return outcome.value
    return {
        InstanceOrigin.SOURCE: "stored",
        InstanceOrigin.DERIVED: "derived",
        InstanceOrigin.OWN_RESULT: "own_result",
    }[origin]


_TALLY_WORDS = {
    "stored": "source images stored",
    "derived": "derived objects stored (no analysis)",
    "own_result": "own results sent back, stored (no analysis)",
    StoreOutcome.REPEATED.value: "repeats",
    StoreOutcome.DIFFERENT_COPY_IGNORED.value: "different copies not stored",
    "refused": "refused",
}


def _summary(counts: Counter[str]) -> str:
    parts = [f"{counts[key]} {words}" for key, words in _TALLY_WORDS.items() if counts[key]]
    return ", ".join(parts) or "nothing stored"


def _refuse(
    ledger: InstanceLedger,
    status: StoreStatus,
    reason: str,
    calling_ae: str,
    peer: str,
    sent_uid: str,
) -> int:
    try:
        ledger.record_rejection(
            status=int(status),
            reason=reason,
            calling_ae=calling_ae,
            peer_address=peer,
            sop_instance_uid=sent_uid,
        )
    except Exception:
        LOG.exception("could not record a refused instance")
    LOG.warning("refused instance from %s at %s: %s (0x%04X)", calling_ae, peer, reason, status)
    return status


def handle_released(event: Event, ledger: InstanceLedger, associations: Associations) -> None:
    """A-RELEASE: log what the association did; note the release on the studies it sent
    source images to (the early completion trigger)."""
    sent, counts = associations.pop(event.assoc)
    calling_ae, peer = _peer(event)
    LOG.info("association from %s at %s released: %s", calling_ae, peer, _summary(counts))
    try:
        ledger.mark_released(sent)
    except Exception:
        LOG.exception("could not record association release")


def handle_aborted(event: Event, associations: Associations) -> None:
    """Aborted without release: log it and forget it (the quiet period will apply)."""
    _, counts = associations.pop(event.assoc)
    calling_ae, peer = _peer(event)
    LOG.info("association from %s at %s aborted: %s", calling_ae, peer, _summary(counts))


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
