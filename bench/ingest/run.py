"""Ingest benchmark: storescu pushes one MR series to DCMTK's storescp, Orthanc and our SCP.

All three peers are measured in the same run, in alternating rounds; the ratios are what matter.
Our SCP runs as ``pacs-node serve`` in durable mode: before success, the file and its folder are
fsynced and its SQLite row committed with ``synchronous=FULL`` (three syncs per instance).
storescp writes without any sync. Orthanc (Debian's 1.10 via :mod:`tests.helpers.orthanc`, storage
and index in its own folder of the temporary directory) runs with its defaults:
``SyncStorageArea`` true, so each file is fdatasync'ed before success, but not its folder, and its
SQLite index runs in WAL mode with ``synchronous=NORMAL``, so index commits are not synced (kept
by a process crash, the last ones may be lost to a power cut): one sync per instance (strace
counted 20 fdatasync for 20 instances, against 42 fsync and 23 fdatasync for pacs-node). It is
the closest durable peer, a little less strict than ours. Usage::

    python bench/ingest/run.py [--instances 500] [--size 512] [--rounds 3] [--senders 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.helpers.dicom_factory import StudySpec, write_study  # noqa: E402
from tests.helpers.node_process import (  # noqa: E402
    run_node,
    wait_for_extra_processes,
    wait_for_listener,
)
from tests.helpers.orthanc import run_orthanc  # noqa: E402
from tests.helpers.services import free_port  # noqa: E402

# DCMTK reads TCP_NODELAY from the environment, and Orthanc's DICOM side is DCMTK: without it,
# Nagle's algorithm and delayed ACKs hold each Orthanc response ~40 ms (21 inst/s, not ~240).
os.environ["TCP_NODELAY"] = "1"
DCMTK_ENV = dict(os.environ)
CALLED_AE = "LUMBAR_NODE"
"""The called AE title of every peer (Orthanc included: it takes it as its own ``DicomAet``)."""


def push(port: int, files: list[Path], senders: int) -> float:
    """Send ``files`` with ``senders`` parallel storescu processes; return seconds."""
    parts = [files[i::senders] for i in range(senders)]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                "/usr/bin/storescu",
                "-aec",
                CALLED_AE,
                "-aet",
                "BENCH",
                "127.0.0.1",
                str(port),
                *map(str, part),
            ],
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for part in parts
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode()[-500:]}")
    return time.perf_counter() - started


def storescp_round(files: list[Path], senders: int, workdir: Path) -> float:
    out = workdir / "storescp"
    out.mkdir()
    port = free_port()
    scp = subprocess.Popen(
        ["/usr/bin/storescp", "-od", str(out), "-aet", CALLED_AE, str(port)],
        env=DCMTK_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_listener(scp, port)
        return push(port, files, senders)
    finally:
        scp.send_signal(signal.SIGTERM)
        scp.wait()
        shutil.rmtree(out)


def peak_rss(pid: int) -> int:
    """The peak resident memory of a running process, in bytes."""
    return next(
        int(line.split()[1]) * 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )


def orthanc_round(files: list[Path], senders: int, workdir: Path) -> tuple[float, int]:
    folder = workdir / "orthanc"
    with run_orthanc(folder, aet=CALLED_AE) as orthanc:
        elapsed = push(orthanc.dicom_port, files, senders)
        peak = peak_rss(orthanc.process.pid)
        stored = orthanc.instance_count()
    shutil.rmtree(folder)
    if stored != len(files):
        raise RuntimeError(f"Orthanc stored {stored} of {len(files)}")
    return elapsed, peak


def node_round(files: list[Path], senders: int, workdir: Path, processes: int) -> tuple[float, int]:
    node_dir = workdir / "node"
    node_dir.mkdir()
    with run_node(
        node_dir, quiet_seconds="3600", log_level="WARNING", scp_processes=str(processes)
    ) as node:
        extra = wait_for_extra_processes(node, processes - 1)
        elapsed = push(node.port, files, senders)
        peak = sum(peak_rss(pid) for pid in {node.process.pid, *extra})
        stored = len(list((node_dir / "spool").rglob("*.dcm")))
    shutil.rmtree(node_dir)
    if stored != len(files):
        raise RuntimeError(f"node stored {stored} of {len(files)}")
    return elapsed, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument(
        "--scp-processes",
        type=int,
        default=2,
        help="pacs-node's SCP processes (PACS_NODE_SCP_PROCESSES) with several senders",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        spec = StudySpec(seed=1, series=("T2 TSE SAG",), slices=args.instances, size=args.size)
        files = write_study(spec, workdir / "series")
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        print(f"series: {len(files)} instances, {args.size}x{args.size}, {megabytes:.0f} MB")
        for senders in (1, args.senders):
            processes = 1 if senders == 1 else args.scp_processes
            peer, orthanc, ours = [], [], []
            orthanc_peaks, peaks = [], []
            for _ in range(args.rounds):
                peer.append(storescp_round(files, senders, workdir))
                elapsed, peak = orthanc_round(files, senders, workdir)
                orthanc.append(elapsed)
                orthanc_peaks.append(peak)
                elapsed, peak = node_round(files, senders, workdir, processes)
                ours.append(elapsed)
                peaks.append(peak)
            p, r, o = statistics.median(peer), statistics.median(orthanc), statistics.median(ours)
            print(f"\n{senders} sender(s), median of {args.rounds} rounds")
            print(f"  storescp : {len(files) / p:7.1f} inst/s  {megabytes / p:6.1f} MB/s")
            print(
                f"  Orthanc  : {len(files) / r:7.1f} inst/s  {megabytes / r:6.1f} MB/s"
                f"  peak RSS {max(orthanc_peaks) / 2**20:.0f} MiB"
            )
            print(
                f"  pacs-node: {len(files) / o:7.1f} inst/s  {megabytes / o:6.1f} MB/s"
                f"  peak RSS {max(peaks) / 2**20:.0f} MiB ({processes} SCP process(es))"
            )
            print(f"  ratio (pacs-node / storescp): {p / o:.2f}x")
            print(f"  ratio (pacs-node / Orthanc) : {r / o:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
