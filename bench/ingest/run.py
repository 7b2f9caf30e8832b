"""Ingest benchmark: storescu pushes the same MR series to DCMTK's storescp and to our SCP.

Both peers are measured in the same run, in alternating rounds; the ratio is what matters.
Our SCP runs as ``pacs-node serve`` in durable mode (fsync per instance, a database row per
instance before success). Usage::

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
from tests.helpers.node_process import run_node, wait_for_listener  # noqa: E402
from tests.helpers.services import free_port  # noqa: E402

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def push(port: int, files: list[Path], senders: int) -> float:
    """Send ``files`` with ``senders`` parallel storescu processes; return seconds."""
    parts = [files[i::senders] for i in range(senders)]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                "/usr/bin/storescu",
                "-aec",
                "LUMBAR_NODE",
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
        ["/usr/bin/storescp", "-od", str(out), "-aet", "LUMBAR_NODE", str(port)],
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


def node_round(files: list[Path], senders: int, workdir: Path) -> tuple[float, int]:
    node_dir = workdir / "node"
    node_dir.mkdir()
    with run_node(node_dir, quiet_seconds="3600", log_level="WARNING") as node:
        elapsed = push(node.port, files, senders)
        peak = next(
            int(line.split()[1]) * 1024
            for line in Path(f"/proc/{node.process.pid}/status").read_text().splitlines()
            if line.startswith("VmHWM:")
        )
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        spec = StudySpec(seed=1, series=("T2 TSE SAG",), slices=args.instances, size=args.size)
        files = write_study(spec, workdir / "series")
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        print(f"series: {len(files)} instances, {args.size}x{args.size}, {megabytes:.0f} MB")
        for senders in (1, args.senders):
            peer, ours, peaks = [], [], []
            for _ in range(args.rounds):
                peer.append(storescp_round(files, senders, workdir))
                elapsed, peak = node_round(files, senders, workdir)
                ours.append(elapsed)
                peaks.append(peak)
            p, o = statistics.median(peer), statistics.median(ours)
            print(f"\n{senders} sender(s), median of {args.rounds} rounds")
            print(f"  storescp : {len(files) / p:7.1f} inst/s  {megabytes / p:6.1f} MB/s")
            print(
                f"  pacs-node: {len(files) / o:7.1f} inst/s  {megabytes / o:6.1f} MB/s"
                f"  peak RSS {max(peaks) / 2**20:.0f} MiB"
            )
            print(f"  ratio (pacs-node / storescp): {p / o:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
