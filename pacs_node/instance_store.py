"""Storing one received instance: the file in the spool and its row in the ledger, durably,
before the sender hears success.

The policy for a SOP Instance UID the node already holds is *keep the first*: the same content
again is a repeat (counted, not rewritten); other content under a held UID is not stored and is
counted on the held instance (``different_copies``), as PACS do by default. A UID held in another
study or series is a conflict. Derived objects that turn out to be the node's own results are
filed as such, and segmentations that refer to one of the node's SEGs as reference
segmentations (a reviewer's correction, recorded as feedback on that SEG's job); none of them
opens a study (:mod:`pacs_node.origin`).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

from pacs_node.db.ledger import HeldCopy, InstanceLedger, InstanceRecord
from pacs_node.domain import InstanceOrigin
from pacs_node.errors import ConflictingInstanceError
from pacs_node.spool import Spool

LOCK_STRIPES = 64
LOCK_FOLDER = ".locks"
"""The spool's folder of stripe lock files (not a study: not a UID)."""


class StoreOutcome(StrEnum):
    """What storing an instance did."""

    STORED = "stored"
    """A new instance: written and recorded."""
    REPEATED = "repeated"
    """The same content under a held UID: counted, the held copy kept."""
    DIFFERENT_COPY_IGNORED = "different_copy_ignored"
    """Other content under a held UID: the first copy kept, this one counted and dropped."""


@dataclasses.dataclass(frozen=True)
class Stored:
    """The outcome of storing one instance and what the instance is to the node."""

    outcome: StoreOutcome
    origin: InstanceOrigin


class StripeLocks:
    """One lock per stripe of SOP Instance UIDs, held across threads and the node's processes:
    the check, write and record of one UID happen together, so two copies arriving at once (on
    two associations, or C-STORE and STOW-RS, in one process or two) cannot overwrite each other.

    A stripe is an ``flock`` on a file in the spool, opened for each hold: two opens exclude
    each other whether they are in one process or two, and closing releases the lock.
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    @contextmanager
    def holding(self, key: str) -> Iterator[None]:
        """Hold the stripe of ``key``."""
        stripe = zlib.crc32(key.encode()) % LOCK_STRIPES  # the same in every process
        fd = self._open(self._folder / f"{stripe}.lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _open(self, path: Path) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        try:
            return os.open(path, flags, 0o640)
        except FileNotFoundError:  # the first hold: the folder is made when first needed
            self._folder.mkdir(exist_ok=True)
            return os.open(path, flags, 0o640)


class InstanceStore:
    """Writes and records received instances into one spool and ledger; several stores (and
    processes) may share them, their stripe locks being files in the spool."""

    def __init__(self, spool: Spool, ledger: InstanceLedger) -> None:
        self._spool = spool
        self._ledger = ledger
        self._locks = StripeLocks(spool.root / LOCK_FOLDER)

    def store(self, record: InstanceRecord, data: bytes) -> Stored:
        """Store ``data`` (the encoded instance) described by ``record``.

        ``record.relative_path`` must be the spool's path for its UIDs; its size and SHA-256 are
        taken from ``data``.

        Raises:
            ConflictingInstanceError: if the UID is held in another study or series.
            SpoolFullError: if the spool is below its free-space watermark.
            OSError: if the file cannot be written.
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """
        record = dataclasses.replace(
            record, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
        )
        record = self._recognised(record)
        with self._locks.holding(record.sop_instance_uid):
            held = self._ledger.held_copy(record.sop_instance_uid)
            if held is None:
                self._write_and_record(record, data)
                return Stored(StoreOutcome.STORED, record.origin)
            if (held.study_instance_uid, held.series_instance_uid) != (
                record.study_instance_uid,
                record.series_instance_uid,
            ):
                where = (
                    "series" if held.study_instance_uid == record.study_instance_uid else "study"
                )
                raise ConflictingInstanceError(
                    f"SOP Instance UID already stored in another {where}"
                )
            if self._held_content(held) != record.sha256:
                self._ledger.record_different_copy(held.instance_id)
                return Stored(StoreOutcome.DIFFERENT_COPY_IGNORED, record.origin)
            held_path = self._spool.path_of(held.relative_path)
            if not held_path.exists():  # removed from the spool by hand: restore it
                self._spool.write_instance(
                    record.study_instance_uid,
                    record.series_instance_uid,
                    record.sop_instance_uid,
                    data,
                )
            self._ledger.record_instance(record)
            return Stored(StoreOutcome.REPEATED, record.origin)

    def _recognised(self, record: InstanceRecord) -> InstanceRecord:
        """``record`` with its origin refined: a derived object may be the node's own result, or
        a segmentation that corrects one of the node's SEGs (a reference segmentation)."""
        if record.origin is not InstanceOrigin.DERIVED:
            return record
        if self._ledger.is_own_result(record.sop_instance_uid):
            return dataclasses.replace(record, origin=InstanceOrigin.OWN_RESULT)
        job_id = self._ledger.job_corrected_by(record.references)
        if job_id is None:
            return record
        return dataclasses.replace(record, origin=InstanceOrigin.REFERENCE, corrects_job_id=job_id)

    def _write_and_record(self, record: InstanceRecord, data: bytes) -> None:
        self._spool.write_instance(
            record.study_instance_uid, record.series_instance_uid, record.sop_instance_uid, data
        )
        try:
            self._ledger.record_instance(record)
        except ConflictingInstanceError:
            # The path derives from the refused (study, series) pair, so it is ours alone.
            self._spool.discard(record.relative_path)
            raise

    def _held_content(self, held: HeldCopy) -> str | None:
        """The SHA-256 of the held copy (read from its file for rows recorded before the hash
        was kept; None if that file is gone)."""
        if held.sha256 is not None:
            return held.sha256
        try:
            return hashlib.sha256(self._spool.path_of(held.relative_path).read_bytes()).hexdigest()
        except FileNotFoundError:
            return None
