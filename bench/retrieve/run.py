"""Retrieve benchmark: a study fetched from a real PACS (Orthanc) by C-MOVE into the node, against
DCMTK's ``movescu`` moving it into DCMTK's ``storescp``.

Orthanc holds one series; each round moves it to storescp (``movescu``, the peer) and then to a
fresh ``pacs-node serve`` (the node's own C-MOVE SCU, ``pacs_node.retrieve.scu.move_study``;
durable mode: every instance fsynced and recorded before Orthanc hears success). Both peers are
measured in the same run, alternating; the ratio is what matters. Usage::

    python bench/retrieve/run.py [--instances 200] [--size 512] [--rounds 3]
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

from pacs_node.retrieve.scu import move_study  # noqa: E402
from pacs_node.sources import Source  # noqa: E402
from tests.helpers.dicom_factory import StudySpec, write_study  # noqa: E402
from tests.helpers.node_process import run_node, wait_for_listener  # noqa: E402
from tests.helpers.orthanc import Orthanc, start_orthanc  # noqa: E402
from tests.helpers.services import free_port  # noqa: E402

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
PEER_AE, NODE_AE = "STORESCP", "LUMBAR_NODE"


def storescp_round(orthanc: Orthanc, study_uid: str, expected: int, workdir: Path) -> float:
    """movescu: Orthanc sends the study to storescp; seconds until movescu returns."""
    out = workdir / "storescp"
    out.mkdir()
    port = free_port()
    scp = subprocess.Popen(
        ["/usr/bin/storescp", "-od", str(out), "-aet", PEER_AE, str(port)],
        env=DCMTK_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_listener(scp, port)
        orthanc.declare_modality("peer", PEER_AE, port)
        started = time.perf_counter()
        moved = subprocess.run(
            [
                "/usr/bin/movescu",
                "-S",
                "-aet",
                PEER_AE,
                "-aec",
                orthanc.aet,
                "-aem",
                PEER_AE,
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={study_uid}",
                "127.0.0.1",
                str(orthanc.dicom_port),
            ],
            env=DCMTK_ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        if moved.returncode != 0:
            raise RuntimeError(f"movescu failed: {moved.stderr[-500:]}")
        received = len(list(out.iterdir()))
        if received != expected:
            raise RuntimeError(f"storescp received {received} of {expected}")
        return elapsed
    finally:
        scp.send_signal(signal.SIGTERM)
        scp.wait()
        shutil.rmtree(out)


def node_round(orthanc: Orthanc, study_uid: str, expected: int, workdir: Path) -> float:
    """The node's C-MOVE: Orthanc sends the study to the node's SCP; seconds until it is done."""
    node_dir = workdir / "node"
    node_dir.mkdir()
    # No completion during the round: the benchmark measures the transfer, not the analysis.
    with run_node(
        node_dir, quiet_seconds="3600", release_grace_seconds="3600", log_level="WARNING"
    ) as node:
        orthanc.declare_modality("node", NODE_AE, node.port)
        source = Source("pacs", orthanc.aet, "127.0.0.1", orthanc.dicom_port)
        started = time.perf_counter()
        outcome = move_study(source, study_uid, calling_ae=NODE_AE, timeout=120)
        elapsed = time.perf_counter() - started
        stored = node.query("SELECT count(*) FROM instances")[0][0]
    shutil.rmtree(node_dir)
    if not outcome.succeeded or stored != expected:
        raise RuntimeError(f"node stored {stored} of {expected}: {outcome}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        spec = StudySpec(seed=7, series=("T2 TSE SAG",), slices=args.instances, size=args.size)
        files = write_study(spec, workdir / "series")
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        orthanc = start_orthanc(workdir / "orthanc")
        try:
            for path in files:
                orthanc.upload(path)
            print(f"study in Orthanc: {len(files)} instances, {args.size}², {megabytes:.0f} MB")
            peer, ours = [], []
            for _ in range(args.rounds):
                peer.append(storescp_round(orthanc, spec.study_uid, len(files), workdir))
                ours.append(node_round(orthanc, spec.study_uid, len(files), workdir))
        finally:
            orthanc.stop()
    p, o = statistics.median(peer), statistics.median(ours)
    print(f"median of {args.rounds} rounds")
    print(f"  movescu -> storescp : {len(files) / p:7.1f} inst/s  {p:6.2f} s")
    print(f"  pacs-node C-MOVE    : {len(files) / o:7.1f} inst/s  {o:6.2f} s")
    print(f"  ratio (pacs-node / movescu->storescp): {p / o:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
