"""The spool: received instances on disk as ``<root>/<study>/<series>/<sop>.dcm``.

Every path component is a validated DICOM UID, so nothing from outside can steer a write out of
the spool. Writes are atomic and durable: temporary file in the target folder, fsync, rename,
fsync of the folder. A reader never sees a half-written instance.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from pacs_node.errors import SpoolFullError
from pacs_node.validation import validate_uid


@dataclass(frozen=True)
class StoredFile:
    """Where an instance was written, relative to the spool root, and its size."""

    relative_path: str
    size_bytes: int


class Spool:
    """A folder of received instances with a free-space watermark."""

    def __init__(self, root: Path, min_free_bytes: int = 0) -> None:
        self.root = Path(root).resolve()
        self.min_free_bytes = min_free_bytes
        self.root.mkdir(parents=True, exist_ok=True)

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
        """Write one encoded instance atomically and durably.

        Raises:
            InvalidIdentifierError: if a UID is invalid.
            SpoolFullError: if free space is below the watermark.
            OSError: if the disk write fails (nothing is left half-written).
        """
        relative = self.relative_path(study_uid, series_uid, sop_uid)
        self.check_space(len(data))
        target = self.path_of(relative)
        atomic_write(target, data)
        return StoredFile(relative, len(data))


def atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` via a temporary file, fsync and rename.

    Raises:
        OSError: if the write fails; the temporary file is removed.
    """
    _make_directories(target.parent)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        temporary.replace(target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


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
