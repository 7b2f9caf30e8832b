"""Receiving one instance, whatever carried it (C-STORE, STOW-RS): decode, check, describe and
store it durably (:class:`~pacs_node.instance_store.InstanceStore`), or refuse it.

Every refusal is a named status (:class:`~pacs_node.scp.statuses.StoreStatus`, the one a C-STORE
answers), a WARNING line and a ``receive_errors`` row; nothing raises into the transport. Log
lines and refusal reasons carry no patient data and no UIDs.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.encaps import parse_basic_offsets
from pydicom.uid import UID

from pacs_node.db.ledger import InstanceLedger, InstanceRecord
from pacs_node.domain import InstanceOrigin
from pacs_node.errors import ConflictingInstanceError, InvalidIdentifierError, SpoolFullError
from pacs_node.instance_store import InstanceStore, Stored, StoreOutcome
from pacs_node.logs import redact
from pacs_node.origin import is_derived_sop_class, referenced_instances
from pacs_node.scp.statuses import StoreStatus
from pacs_node.selection import series_attributes
from pacs_node.spool import Spool
from pacs_node.validation import is_valid_uid, validate_uid

LOG = logging.getLogger(__name__)

_ITEM_TAG = b"\xfe\xff\x00\xe0"
"""(FFFE,E000) little endian: the first bytes of encapsulated pixel data (PS3.5 A.4)."""

Check = Callable[[Dataset], None]
"""A transport's own check of a decoded data set; raises :class:`RefusedError`."""


class RefusedError(Exception):
    """A store refused with ``status`` for ``reason``."""

    def __init__(self, status: StoreStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Sender:
    """Who sent an instance: an AE title (or API token name) and an address."""

    name: str
    address: str


@dataclass(frozen=True)
class Received:
    """What became of one instance.

    Attributes:
        status: The status a C-STORE answers (success, or why it was refused).
        record: The ledger record, when stored.
        stored: The store's outcome, when stored.
        identity: (SOP Class UID, SOP Instance UID) of the data set when both are valid.
        reason: Why it was refused (no patient data, no UIDs).
    """

    status: StoreStatus
    record: InstanceRecord | None = None
    stored: Stored | None = None
    identity: tuple[str, str] | None = None
    reason: str | None = None


def fully_decoded(read: Callable[[], Dataset]) -> Dataset:
    """The data set ``read`` returns, every element (nested ones too) parsed now, so a truncated
    or corrupt stream is refused here rather than found by a worker later.

    Raises:
        RefusedError: cannot understand, if it cannot be decoded.
    """
    try:
        ds = read()
        for _ in ds.iterall():
            pass
    except Exception as exc:
        raise RefusedError(
            StoreStatus.CANNOT_UNDERSTAND, f"data set cannot be decoded: {redact(str(exc))}"
        ) from exc
    return ds


def check_identifiers(ds: Dataset) -> None:
    """The study, series, SOP instance and SOP class UIDs must follow the UID grammar.

    Raises:
        RefusedError: cannot understand, naming the first invalid one.
    """
    try:
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
            validate_uid(ds.get(keyword), keyword)
    except InvalidIdentifierError as exc:
        raise RefusedError(StoreStatus.CANNOT_UNDERSTAND, str(exc)) from exc


def expected_pixel_bytes(ds: Dataset) -> int | None:
    """Bytes of native pixel data the image attributes describe (None if they do not)."""
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits = (
            int(ds.Rows)
            * int(ds.Columns)
            * int(ds.get("SamplesPerPixel", 1))
            * frames
            * int(ds.BitsAllocated)
        )
    except (AttributeError, TypeError, ValueError):
        return None
    return bits // 8


def check_pixel_data(ds: Dataset) -> None:
    """Pixel data must fit the transfer syntax: as long as the image needs when native,
    encapsulated (undefined length, items with a basic offset table first) when compressed.

    Raises:
        RefusedError: cannot understand, when it does not.
    """
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
    expected, actual = expected_pixel_bytes(ds), len(value)
    if expected is None or actual < expected:
        raise RefusedError(
            StoreStatus.CANNOT_UNDERSTAND,
            f"pixel data truncated or undescribed ({actual} bytes, expected {expected})",
        )


def describe(ds: Dataset, spool: Spool, calling_ae: str) -> InstanceRecord:
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
        references=referenced_instances(ds),
    )


def tally_key(stored: Stored) -> str:
    """The word a transport counts a stored instance under (for its summary line)."""
    if stored.outcome is not StoreOutcome.STORED:
        return stored.outcome.value
    return {
        InstanceOrigin.SOURCE: "stored",
        InstanceOrigin.DERIVED: "derived",
        InstanceOrigin.OWN_RESULT: "own_result",
        InstanceOrigin.REFERENCE: "reference",
    }[stored.origin]


REFUSED = "refused"
"""The tally key of a refused instance."""

_TALLY_WORDS = {
    "stored": "source images stored",
    "derived": "derived objects stored (no analysis)",
    "own_result": "own results sent back, stored (no analysis)",
    "reference": "reference segmentations stored (no analysis)",
    StoreOutcome.REPEATED.value: "repeats",
    StoreOutcome.DIFFERENT_COPY_IGNORED.value: "different copies not stored",
    REFUSED: "refused",
}


def summary(counts: Counter[str]) -> str:
    """Counts of outcomes in words, for a log line (``"3 source images stored, 1 refused"``)."""
    parts = [f"{counts[key]} {words}" for key, words in _TALLY_WORDS.items() if counts[key]]
    return ", ".join(parts) or "nothing stored"


class Intake:
    """Validates and stores received instances into one spool and ledger."""

    def __init__(self, spool: Spool, store: InstanceStore, ledger: InstanceLedger) -> None:
        self.spool = spool
        self.store = store
        self.ledger = ledger

    def receive(
        self,
        read: Callable[[], Dataset],
        encoded: Callable[[], bytes],
        sender: Sender,
        *,
        check: Check | None = None,
        claimed_uid: str | None = None,
    ) -> Received:
        """Decode, check and durably store one instance, or refuse it (row and log line).

        Args:
            read: Returns the received data set (its file meta set).
            encoded: Returns the bytes to store (a DICOM file).
            sender: Who sent it, for the ledger and log lines.
            check: The transport's own check of the decoded data set, after the UIDs'.
            claimed_uid: The SOP Instance UID the transport announced, for a refusal's row
                (the data set's is used when not given).
        """
        ds: Dataset | None = None
        try:
            try:
                self.spool.check_space()
            except SpoolFullError as exc:
                raise RefusedError(StoreStatus.OUT_OF_RESOURCES, str(exc)) from exc
            ds = fully_decoded(read)
            record = self._understood(ds, sender.name, check)
            stored = self._store(record, encoded())
        except RefusedError as refusal:
            return self._refuse(refusal, sender, ds, claimed_uid)
        except Exception as exc:  # the database or something unforeseen: never crash the node
            LOG.exception("storing a received instance failed")
            failure = RefusedError(
                StoreStatus.PROCESSING_FAILURE, f"processing failed: {type(exc).__name__}"
            )
            return self._refuse(failure, sender, ds, claimed_uid)
        if stored.outcome is StoreOutcome.DIFFERENT_COPY_IGNORED:
            LOG.warning(
                "kept the first copy of an instance: a different copy from %s at %s was not stored",
                sender.name,
                sender.address,
            )
        return Received(StoreStatus.SUCCESS, record, stored, _identity(ds))

    def _understood(self, ds: Dataset, calling_ae: str, check: Check | None) -> InstanceRecord:
        try:
            check_identifiers(ds)
            if check is not None:
                check(ds)
            check_pixel_data(ds)
            return describe(ds, self.spool, calling_ae)
        except RefusedError:
            raise
        except Exception as exc:  # a value pydicom parsed but that makes no sense (empty, wrong VR)
            raise RefusedError(
                StoreStatus.CANNOT_UNDERSTAND,
                f"data set has unusable values ({type(exc).__name__})",
            ) from exc

    def _store(self, record: InstanceRecord, data: bytes) -> Stored:
        try:
            return self.store.store(record, data)
        except SpoolFullError as exc:
            raise RefusedError(StoreStatus.OUT_OF_RESOURCES, str(exc)) from exc
        except ConflictingInstanceError as exc:
            raise RefusedError(StoreStatus.DUPLICATE_SOP_INSTANCE, str(exc)) from exc
        except OSError as exc:
            raise RefusedError(
                StoreStatus.OUT_OF_RESOURCES, f"spool write failed: {exc.strerror}"
            ) from exc

    def _refuse(
        self,
        refusal: RefusedError,
        sender: Sender,
        ds: Dataset | None,
        claimed_uid: str | None,
    ) -> Received:
        identity = _identity(ds)
        if claimed_uid is None and identity is not None:
            claimed_uid = identity[1]
        try:
            self.ledger.record_rejection(
                status=int(refusal.status),
                reason=refusal.reason,
                calling_ae=sender.name,
                peer_address=sender.address,
                sop_instance_uid=claimed_uid,
            )
        except Exception:
            LOG.exception("could not record a refused instance")
        LOG.warning(
            "refused instance from %s at %s: %s (0x%04X)",
            sender.name,
            sender.address,
            refusal.reason,
            refusal.status,
        )
        return Received(refusal.status, identity=identity, reason=refusal.reason)


def _identity(ds: Dataset | None) -> tuple[str, str] | None:
    """(SOP Class UID, SOP Instance UID) of ``ds`` when both are valid UIDs."""
    if ds is None:
        return None
    try:
        sop_class, sop_instance = ds.get("SOPClassUID"), ds.get("SOPInstanceUID")
    except Exception:  # an element that cannot be converted
        return None
    if not all(isinstance(uid, str) and is_valid_uid(uid) for uid in (sop_class, sop_instance)):
        return None
    return str(sop_class), str(sop_instance)
