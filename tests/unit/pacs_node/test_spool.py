from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from pacs_node import spool as spool_module
from pacs_node.errors import InvalidIdentifierError, SpoolFullError
from pacs_node.spool import Spool, atomic_write

STUDY, SERIES, SOP = "1.2.3", "1.2.3.4", "1.2.3.4.5"


def test_instance_lands_under_study_series_sop(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    stored = spool.write_instance(STUDY, SERIES, SOP, b"DICM" * 10)
    assert stored.relative_path == f"{STUDY}/{SERIES}/{SOP}.dcm"
    assert (tmp_path / stored.relative_path).read_bytes() == b"DICM" * 10
    assert stored.size_bytes == 40
    assert not list(tmp_path.rglob("*.tmp"))


def test_rewrite_replaces_atomically(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.write_instance(STUDY, SERIES, SOP, b"first")
    spool.write_instance(STUDY, SERIES, SOP, b"second")
    assert (tmp_path / STUDY / SERIES / f"{SOP}.dcm").read_bytes() == b"second"


@pytest.mark.parametrize(
    "uids",
    [
        ("..", SERIES, SOP),
        (STUDY, "../../etc", SOP),
        (STUDY, SERIES, "/etc/passwd"),
        (STUDY, SERIES, "1.2.3/../../../x"),
        ("1.2.3\x00", SERIES, SOP),
    ],
)
def test_bad_uids_never_touch_the_disk(tmp_path: Path, uids: tuple[str, str, str]) -> None:
    root = tmp_path / "spool"
    spool = Spool(root)
    with pytest.raises(InvalidIdentifierError):
        spool.write_instance(*uids, b"x")
    assert [p for p in tmp_path.rglob("*") if p != root] == []


def test_paths_outside_the_root_are_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    with pytest.raises(ValueError, match="leaves the spool"):
        spool.path_of("../outside.dcm")


def test_watermark_refuses_before_writing(tmp_path: Path) -> None:
    spool = Spool(tmp_path, min_free_bytes=1 << 62)  # more than any disk has
    with pytest.raises(SpoolFullError):
        spool.write_instance(STUDY, SERIES, SOP, b"x")
    assert not list(tmp_path.rglob("*.dcm"))


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space"):
        atomic_write(tmp_path / "a" / "b.dcm", b"data")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_discard_removes_the_file_and_empty_folders_only(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    kept = spool.write_instance(STUDY, SERIES, SOP, b"keep")
    lone = spool.write_instance(STUDY, "1.2.3.9", "1.2.3.9.1", b"x")
    spool.discard(lone.relative_path)
    assert not (tmp_path / STUDY / "1.2.3.9").exists()
    assert (tmp_path / kept.relative_path).read_bytes() == b"keep"


def test_threads_writing_at_once_share_fsync_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight writers arriving while a slow round runs are synced together in the next one:
    every file is fsynced, their folder far fewer than eight times."""
    spool = Spool(tmp_path)
    files, folders = [], []
    real_fsync = os.fsync
    first_round_started = threading.Event()

    def slow_fsync(fd: int) -> None:
        first_round_started.set()
        time.sleep(0.1)  # a slow disk: the other writers queue meanwhile
        files.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(spool_module.os, "fsync", slow_fsync)
    monkeypatch.setattr(spool_module, "_fsync_directory", lambda folder: folders.append(folder))
    first = threading.Thread(target=spool.write_instance, args=(STUDY, SERIES, "1.9.0", b"0"))
    first.start()
    assert first_round_started.wait(30)
    others = [
        threading.Thread(target=spool.write_instance, args=(STUDY, SERIES, f"1.9.{i}", b"x"))
        for i in range(1, 8)
    ]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(60)
    series = tmp_path / STUDY / SERIES
    assert len(files) == 8
    # The first writer's round, then (unless the machine stalls a writer for a whole round)
    # one round for the seven others.
    assert 2 <= folders.count(series) < 8
    assert len(list(series.glob("*.dcm"))) == 8


def test_a_failed_fsync_fails_the_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(spool_module.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        Spool(tmp_path).write_instance(STUDY, SERIES, SOP, b"DICM")


def test_partial_writes_a_crash_left_are_removed_and_instances_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.write_instance(STUDY, SERIES, SOP, b"DICM")
    folder = tmp_path / STUDY / SERIES
    (folder / f".{SOP}.dcm.0123456789abcdef.tmp").write_bytes(b"DI")
    (folder / ".1.2.3.4.6.dcm.fedcba9876543210.tmp").write_bytes(b"")
    assert spool.remove_partial_writes() == 2
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{SOP}.dcm"]
    assert spool.remove_partial_writes() == 0
