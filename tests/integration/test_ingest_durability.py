"""Every instance the node answered with C-STORE success survives ``kill -9`` of the node.

``pacs-node serve`` (SQLite) takes series from DCMTK ``storescu`` and is killed with SIGKILL
mid-stream three times, at different points and with one to three associations in flight. After
each restart on the same folder, every instance ``storescu`` logged a Success for must be in the
ledger, its file in the spool holding exactly the data set that was sent; at the end everything is
sent again and must be answered with success and leave one row per instance.

How it can fail: an answer sent before the file is renamed into place or before its row is
committed (a store finished on another thread, a commit deferred or batched) leaves, for the
instances acknowledged just before the kill, no row or no file, and :func:`check_ledger` names
them. SIGKILL tests that order, not the fsyncs: the kernel keeps a killed process's writes.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import time
from pathlib import Path
from typing import cast

import pytest
from pydicom import dcmread

from tests.helpers.dicom_factory import StudySpec, write_study
from tests.helpers.node_process import NodeProcess, run_node

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORESCU = "/usr/bin/storescu"
if not Path(STORESCU).exists():
    pytest.skip("DCMTK is not installed (apt-get install dcmtk)", allow_module_level=True)

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
# Neither job trigger fires during the test: a job would load the model in the embedded worker.
NODE_SETTINGS = {"quiet_seconds": "3600", "release_grace_seconds": "3600"}
INSTANCES = 200
ROUNDS = ((1, 40), (2, 90), (3, 140))
"""Per round: its associations, and how many rows of its series trigger the kill."""
DEADLINE = 90.0

SENDING = "I: Sending file: "
RESPONSE = "I: Received Store Response ("
SUCCESS = "I: Received Store Response (Success)"


def data_set(part10: bytes) -> bytes:
    """The encoded data set of a DICOM file: what follows its preamble and file meta group."""
    assert part10[128:138] == b"DICM\x02\x00\x00\x00UL", "not a Part 10 file with group length"
    (group_length,) = struct.unpack_from("<I", part10, 140)
    return part10[144 + group_length :]


def instance_count(node: NodeProcess) -> int:
    return cast(int, node.query("SELECT count(*) FROM instances")[0][0])


def storescu(port: int, files: list[Path], log: Path) -> subprocess.Popen[bytes]:
    """Start a verbose ``storescu`` sending ``files`` on one association, logging to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [STORESCU, "-v", "-aet", "DURABILITY", "-aec", "LUMBAR_NODE", "127.0.0.1", str(port)]
            + [str(f) for f in files],
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


def acknowledged(log: Path) -> set[Path]:
    """The files a ``storescu -v`` log shows answered with Success.

    One association sends one file at a time: each response answers the last file named.
    """
    acked: set[Path] = set()
    sending: Path | None = None
    for line in log.read_text().splitlines():
        if line.startswith(SENDING):
            sending = Path(line.removeprefix(SENDING))
        elif line.startswith(RESPONSE):
            assert sending is not None, f"{log}: a response to no request: {line}"
            if line == SUCCESS:
                acked.add(sending)
            sending = None
    return acked


def send(port: int, parts: list[list[Path]], logs: Path) -> list[subprocess.Popen[bytes]]:
    """One ``storescu`` per part, all at once, logging to ``logs/storescu-<i>.log``."""
    logs.mkdir(parents=True, exist_ok=True)
    return [storescu(port, part, logs / f"storescu-{i}.log") for i, part in enumerate(parts)]


def acknowledged_by(procs: list[subprocess.Popen[bytes]], logs: Path) -> set[Path]:
    """Wait for the senders to end; the files they logged as acknowledged."""
    for proc in procs:
        proc.wait(timeout=DEADLINE)
    return set().union(*(acknowledged(logs / f"storescu-{i}.log") for i in range(len(procs))))


def send_and_kill(
    node: NodeProcess, files: list[Path], senders: int, kill_at: int, logs: Path
) -> set[Path]:
    """Send ``files`` over ``senders`` associations and SIGKILL the node once ``kill_at`` of them
    are in its ledger; returns the files acknowledged before it died."""
    target = instance_count(node) + kill_at
    procs = send(node.port, [files[i::senders] for i in range(senders)], logs)
    deadline = time.monotonic() + DEADLINE
    try:
        while instance_count(node) < target:
            assert any(p.poll() is None for p in procs), "the senders ended before the kill"
            assert time.monotonic() < deadline, f"fewer than {target} rows within {DEADLINE} s"
            time.sleep(0.01)
    finally:  # on failure too: the senders then end, their peer gone
        node.process.kill()
        node.process.wait()
    acked = acknowledged_by(procs, logs)
    assert 0 < len(acked) < len(files), f"{len(acked)} acknowledged: not killed mid-stream"
    return acked


def check_ledger(node: NodeProcess, spool: Path, sent: dict[str, bytes], acked: set[str]) -> int:
    """Every acknowledged instance has its row; every row (acknowledged or not) names the
    instance's ``.dcm`` file in the spool (never a temporary file), holding the size and SHA-256
    the row records and exactly the data set sent; no partial write is left. Returns the number
    of rows."""
    assert not list(spool.rglob("*.tmp")), "a crash's partial writes outlived the restart"
    rows = node.query("SELECT sop_instance_uid, path, size_bytes, sha256 FROM instances")
    held = {str(uid) for uid, *_ in rows}
    assert not acked - held, f"acknowledged, then lost: {sorted(acked - held)}"
    for uid, path, size, sha256 in rows:
        assert Path(str(path)).name == f"{uid}.dcm", f"row of {uid} names {path}"
        file = spool / str(path)
        assert file.is_file(), f"row of {uid}: no file {path}"
        stored = file.read_bytes()
        assert (len(stored), hashlib.sha256(stored).hexdigest()) == (size, sha256), uid
        assert data_set(stored) == sent[str(uid)], f"{uid}: the stored data set is not the one sent"
    return len(rows)


def test_acknowledged_instances_survive_sigkill(tmp_path: Path) -> None:
    workdir, spool = tmp_path / "node", tmp_path / "node" / "spool"
    workdir.mkdir()
    series = [
        write_study(
            StudySpec(seed=40 + i, series=("T2 TSE SAG",), slices=INSTANCES, size=128),
            tmp_path / f"series-{i}",
        )
        for i in range(len(ROUNDS))
    ]
    uid_of = {f: str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for s in series for f in s}
    sent = {uid_of[f]: data_set(f.read_bytes()) for f in uid_of}
    acked: set[str] = set()
    for i, (senders, kill_at) in enumerate(ROUNDS):
        # The first start is on an empty folder; each later one follows a kill.
        with run_node(workdir, **NODE_SETTINGS) as node:
            check_ledger(node, spool, sent, acked)
            logs = tmp_path / f"round-{i}"
            acked |= {uid_of[f] for f in send_and_kill(node, series[i], senders, kill_at, logs)}
    with run_node(workdir, **NODE_SETTINGS) as node:
        check_ledger(node, spool, sent, acked)
        # Everything again: repeats are answered with success and stored once.
        procs = send(node.port, series, tmp_path / "resend")
        resent = acknowledged_by(procs, tmp_path / "resend")
        assert [p.returncode for p in procs] == [0] * len(procs)
        assert resent == set(uid_of)
        assert check_ledger(node, spool, sent, set(sent)) == len(sent)
