"""The spool: received instances on disk as ``<root>/<study>/<series>/<sop>.dcm``.

Every path component is a validated DICOM UID, so nothing from outside can steer a write out of
the spool. Writes are atomic and durable: a temporary file in the target folder, renamed into
place, then the file and its folder fsynced. A reader never sees a half-written file. Received
instances share their fsyncs between threads (:class:`SyncGroup`, a group commit); an
instance counts once its ledger row is committed, after the fsyncs, so a crash between the
rename and the fsync leaves a file without a row, which the next copy replaces.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pacs_node.errors import SpoolFullError
from pacs_node.validation import validate_uid


@dataclass(frozen=True)
class StoredFile:
    """Where an instance was written, relative to the spool root, and its size."""

    relative_path: str
    size_bytes: int


@dataclass
class _Round:
    """One round of a :class:`SyncGroup`: the files and folders it syncs, and how it ended."""

    files: list[int] = field(default_factory=list)
    folders: set[Path] = field(default_factory=set)
    done: bool = False
    error: OSError | None = None

    def flush(self) -> None:
        try:
            for fd in self.files:
                os.fsync(fd)
            for folder in sorted(self.folders):
                _fsync_directory(folder)
        except OSError as exc:
            self.error = exc

    def raise_error(self) -> None:
        if self.error is not None:
            raise OSError(self.error.errno, self.error.strerror)


class SyncGroup:
    """Group commit of fsyncs: the threads that need a file and its folder on disk at the same
    time share one round. A thread that arrives while a round runs queues for the next, which
    one of the queued threads then runs for all of them: each file is fsynced, each folder
    once. A writer alone pays what it always did, a file and a folder fsync."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._collecting = _Round()
        self._running = False

    def sync(self, fd: int, folder: Path) -> None:
        """Return once the open file ``fd`` and ``folder`` are fsynced.

        Raises:
            OSError: if an fsync of its round failed.
        """
        with self._changed:
            round_ = self._collecting
            round_.files.append(fd)
            round_.folders.add(folder)
            while not round_.done:
                if not self._running and round_ is self._collecting:
                    self._running = True
                    self._collecting = _Round()
                    break
                self._changed.wait()
            else:
                round_.raise_error()
                return
        try:
            round_.flush()
        finally:
            with self._changed:
                round_.done = True
                self._running = False
                self._changed.notify_all()
        round_.raise_error()


class Spool:
    """A folder of received instances with a free-space watermark."""

    def __init__(self, root: Path, min_free_bytes: int = 0) -> None:
        self.root = Path(root).resolve()
        self.min_free_bytes = min_free_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._syncs = SyncGroup()

    def relative_path(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        """The spool-relative path of an instance.

        Raises:
            InvalidIdentifierError: if any UID is not a valid DICOM UID.
        """
        parts = (
            validate_uid(study_uid, "Study Instance UID"),
            validate_uid(series_uid, "Series Instance UID"),
            validate_uid(sop_uid, "SOP Instance UID") + ".dcm",
        )
        return "/".join(parts)

    def path_of(self, relative_path: str) -> Path:
        """The absolute path for a spool-relative path, refusing anything outside the root.

        Raises:
            ValueError: if the path would leave the spool.
        """
        path = (self.root / relative_path).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"path {relative_path!r} leaves the spool")
        return path

    def remove_partial_writes(self) -> int:
        """Remove the temporary files of writes a crash interrupted (never instances: a write
        becomes one only when renamed); returns how many. For start-up, before receiving.

        Raises:
            OSError: if the spool cannot be read.
        """
        removed = 0
        for folder, _, names in os.walk(self.root):
            for name in names:
                if name.startswith(".") and name.endswith(".tmp"):
                    (Path(folder) / name).unlink(missing_ok=True)
                    removed += 1
        return removed

    def discard(self, relative_path: str) -> None:
        """Remove an instance written in error, and its folders if they are left empty.

        Raises:
            ValueError: if the path would leave the spool.
        """
        path = self.path_of(relative_path)
        path.unlink(missing_ok=True)
        for folder in (path.parent, path.parent.parent):
            try:
                folder.rmdir()  # only succeeds when empty (a concurrent write keeps it)
            except OSError:
                return

    def free_bytes(self) -> int:
        """Free space on the spool's file system, for an unprivileged writer."""
        return shutil.disk_usage(self.root).free

    def check_space(self, incoming_bytes: int = 0) -> None:
        """Refuse when the write would leave less than the watermark free.

        Raises:
            SpoolFullError: if free space is below the watermark.
        """
        if self.free_bytes() - incoming_bytes < self.min_free_bytes:
            raise SpoolFullError(f"spool free space below watermark ({self.min_free_bytes} bytes)")

    def write_instance(
        self, study_uid: str, series_uid: str, sop_uid: str, data: bytes
    ) -> StoredFile:
        """Write one encoded instance atomically and durably (fsyncs shared with the other
        threads writing at the same time).

        Raises:
            InvalidIdentifierError: if a UID is invalid.
            SpoolFullError: if free space is below the watermark.
            OSError: if the disk write fails (no half-written file under the target's name).
        """
        relative = self.relative_path(study_uid, series_uid, sop_uid)
        self.check_space(len(data))
        target = self.path_of(relative)
        fd = _write_in_place(target, data)
        try:
            self._syncs.sync(fd, target.parent)
        finally:
            os.close(fd)
        return StoredFile(relative, len(data))


def atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` via a temporary file, fsync and rename, then fsync the
    folder.

    Raises:
        OSError: if the write fails; the temporary file is removed.
    """
    _make_directories(target.parent)
    temporary = _temporary_name(target)
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        temporary.replace(target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def _write_in_place(target: Path, data: bytes) -> int:
    """Write ``data`` to a temporary file renamed to ``target``, not yet synced; return the
    open file for the caller to sync and close.

    Raises:
        OSError: if the write fails; the temporary file is removed.
    """
    _make_directories(target.parent)
    temporary = _temporary_name(target)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    try:
        _write_all(fd, data)
        temporary.replace(target)
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    return fd


def _temporary_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _make_directories(directory: Path) -> None:
    """Create missing folders and fsync each new folder's parent so the entry survives a crash."""
    if directory.is_dir():
        return
    _make_directories(directory.parent)
    try:
        directory.mkdir()
    except FileExistsError:
        return
    _fsync_directory(directory.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
