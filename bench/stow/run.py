"""STOW-RS ingest benchmark: the same node takes N MR instances by STOW-RS (HTTP, multipart
requests of ``--batch`` instances) and N others by C-STORE (DCMTK's storescu), in one run.

Both paths are durable (fsync per instance, a database row per instance before the answer); the
ratio is what matters. Usage::

    python bench/stow/run.py [--instances 200] [--size 512] [--batch 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.helpers.dicom_factory import StudySpec, write_study  # noqa: E402
from tests.helpers.node_process import NodeProcess, run_node  # noqa: E402

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
BOUNDARY = "bench-stow-boundary"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def sender_token(node: NodeProcess) -> str:
    """A sender token made by the node's own command."""
    done = subprocess.run(
        [sys.executable, "-m", "worker.main", "tokens", "create", "bench", "--role", "sender"],
        env={**os.environ, **node.env},
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1]


def bodies(files: list[Path], batch: int) -> list[bytes]:
    """Multipart bodies of ``batch`` files each (built before the clock starts)."""
    head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    return [
        b"".join(head + f.read_bytes() + b"\r\n" for f in files[i : i + batch])
        + f"--{BOUNDARY}--\r\n".encode()
        for i in range(0, len(files), batch)
    ]


def stow(node: NodeProcess, token: str, requests: list[bytes]) -> float:
    """POST every body; return seconds."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": STOW_TYPE}
    started = time.perf_counter()
    with httpx.Client(timeout=600) as client:
        for body in requests:
            answer = client.post(f"{node.api_url}/dicom-web/studies", content=body, headers=headers)
            if answer.status_code != 200:
                raise RuntimeError(f"STOW-RS answered {answer.status_code}: {answer.text[-300:]}")
    return time.perf_counter() - started


def cstore(node: NodeProcess, files: list[Path]) -> float:
    """Send ``files`` with one storescu association; return seconds."""
    started = time.perf_counter()
    subprocess.run(
        ["/usr/bin/storescu", "-aec", "LUMBAR_NODE", "-aet", "BENCH", "127.0.0.1", str(node.port)]
        + [str(f) for f in files],
        env=DCMTK_ENV,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        series = {
            (kind, n): write_study(
                StudySpec(
                    seed=100 * n + i, series=("T2 TSE SAG",), slices=args.instances, size=args.size
                ),
                workdir / f"{kind}-{n}",
            )
            for n in range(args.rounds)
            for i, kind in enumerate(("stow", "cstore"))
        }
        megabytes = sum(f.stat().st_size for f in series["stow", 0]) / 1e6
        print(f"series: {args.instances} instances, {args.size}x{args.size}, {megabytes:.0f} MB")
        node_dir = workdir / "node"
        node_dir.mkdir()
        by_stow, by_cstore = [], []
        with run_node(node_dir, quiet_seconds="3600", log_level="WARNING") as node:
            token = sender_token(node)
            for n in range(args.rounds):  # alternate, so neither path gets a warmer node
                by_stow.append(stow(node, token, bodies(series["stow", n], args.batch)))
                by_cstore.append(cstore(node, series["cstore", n]))
        stored = len(list((node_dir / "spool").rglob("*.dcm")))
        if stored != 2 * args.rounds * args.instances:
            raise RuntimeError(f"node stored {stored} of {2 * args.rounds * args.instances}")
        s, c = statistics.median(by_stow), statistics.median(by_cstore)
        print(f"median of {args.rounds} rounds, one client each, STOW batches of {args.batch}")
        print(f"  STOW-RS : {args.instances / s:7.1f} inst/s  {megabytes / s:6.1f} MB/s")
        print(f"  C-STORE : {args.instances / c:7.1f} inst/s  {megabytes / c:6.1f} MB/s")
        print(f"  ratio (STOW-RS / C-STORE): {c / s:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
