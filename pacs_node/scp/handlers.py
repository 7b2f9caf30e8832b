"""DIMSE event handlers: plain functions, dependencies passed as handler arguments.

A C-STORE is answered with success only after the instance is on disk (fsynced) and recorded
in the database. Every refusal is a named status, a log line and a ``receive_errors`` row; no
exception escapes into pynetdicom. Logs carry no patient data and no UIDs (row ids instead).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import cast

from pydicom import Dataset
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from pacs_node.db.ledger import InstanceLedger, InstanceRecord
from pacs_node.errors import ConflictingInstanceError, InvalidIdentifierError, SpoolFullError
from pacs_node.scp.statuses import StoreStatus
from pacs_node.selection import series_attributes
from pacs_node.spool import Spool
from pacs_node.validation import validate_uid

LOG = logging.getLogger(__name__)

# Pixel data lengths can be checked only for uncompressed transfer syntaxes.
_NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
}


class RefusedError(Exception):
    """Internal: a store refused with ``status`` for ``reason``."""

    def __init__(self, status: StoreStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class AssociationStudies:
    """Which studies each live association has sent to, for the release trigger."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._studies: defaultdict[int, set[str]] = defaultdict(set)

    def add(self, association: object, study_uid: str) -> None:
        """Remember that ``association`` sent an instance of ``study_uid``."""
        with self._lock:
            self._studies[id(association)].add(study_uid)

    def pop(self, association: object) -> set[str]:
        """Forget an association, returning the studies it sent to."""
        with self._lock:
            return self._studies.pop(id(association), set())


def handle_echo(event: Event) -> int:
    """C-ECHO: always success."""
    return StoreStatus.SUCCESS


def _peer(event: Event) -> tuple[str, str]:
    requestor = event.assoc.requestor
    return requestor.ae_title.strip(), f"{requestor.address}:{requestor.port}"


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
            StoreStatus.CANNOT_UNDERSTAND, f"data set cannot be decoded: {exc}"
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
    if "PixelData" in ds and ds.file_meta.TransferSyntaxUID in _NATIVE_SYNTAXES:
        expected = _expected_pixel_bytes(ds)
        actual = len(ds.PixelData)
        if expected is None or actual < expected:
            raise RefusedError(
                StoreStatus.CANNOT_UNDERSTAND,
                f"pixel data truncated or undescribed ({actual} bytes, expected {expected})",
            )


def _record_for(ds: Dataset, relative_path: str, size: int, calling_ae: str) -> InstanceRecord:
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
        relative_path=relative_path,
        size_bytes=size,
        instance_number=number("InstanceNumber"),
        series_number=number("SeriesNumber"),
        patient_id=str(ds.get("PatientID", "") or "") or None,
        accession_number=str(ds.get("AccessionNumber", "") or "") or None,
        calling_ae=calling_ae,
        series_attributes=series_attributes(ds),
    )


def handle_store(
    event: Event, spool: Spool, ledger: InstanceLedger, studies: AssociationStudies
) -> int:
    """C-STORE: validate, write atomically, record, then answer success."""
    calling_ae, peer = _peer(event)
    sent_uid = str(getattr(event.request, "AffectedSOPInstanceUID", None) or "")
    try:
        try:
            spool.check_space()
        except SpoolFullError as exc:
            raise RefusedError(StoreStatus.OUT_OF_RESOURCES, str(exc)) from exc
        ds = _decode(event)
        _check(ds, event)
        data = event.encoded_dataset(include_meta=True)
        try:
            stored = spool.write_instance(
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, data
            )
        except SpoolFullError as exc:
            raise RefusedError(StoreStatus.OUT_OF_RESOURCES, str(exc)) from exc
        except OSError as exc:
            raise RefusedError(StoreStatus.OUT_OF_RESOURCES, f"spool write failed: {exc}") from exc
        try:
            ledger.record_instance(
                _record_for(ds, stored.relative_path, stored.size_bytes, calling_ae)
            )
        except ConflictingInstanceError as exc:
            # The path is derived from the refused (study, series) pair, so it is ours alone.
            spool.discard(stored.relative_path)
            raise RefusedError(StoreStatus.DUPLICATE_SOP_INSTANCE, str(exc)) from exc
        studies.add(event.assoc, ds.StudyInstanceUID)
        return StoreStatus.SUCCESS
    except RefusedError as refusal:
        return _refuse(ledger, refusal.status, refusal.reason, calling_ae, peer, sent_uid)
    except Exception as exc:  # the database or something unforeseen: never crash the node
        LOG.exception("C-STORE processing failed")
        return _refuse(
            ledger,
            StoreStatus.PROCESSING_FAILURE,
            f"processing failed: {type(exc).__name__}",
            calling_ae,
            peer,
            sent_uid,
        )


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
    LOG.warning("refused instance from %s: %s (0x%04X)", calling_ae, reason, status)
    return status


def handle_released(event: Event, ledger: InstanceLedger, studies: AssociationStudies) -> None:
    """A-RELEASE: note the release on the studies it sent (the early completion trigger)."""
    sent = studies.pop(event.assoc)
    try:
        ledger.mark_released(sent)
    except Exception:
        LOG.exception("could not record association release")


def handle_closed(event: Event, studies: AssociationStudies) -> None:
    """Aborted or closed without release: forget it (the quiet period will apply)."""
    studies.pop(event.assoc)


def handle_rejected(event: Event, ledger: InstanceLedger) -> None:
    """Association rejected (unknown calling AE, limit reached): log it and keep a row."""
    calling_ae, peer = _peer(event)
    reason = f"association rejected for calling AE {calling_ae!r}"
    LOG.warning("%s from %s", reason, peer)
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
