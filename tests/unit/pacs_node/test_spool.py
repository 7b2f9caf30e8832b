from __future__ import annotations

from pathlib import Path

import pytest

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
