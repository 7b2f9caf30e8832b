"""Run ``pacs-node serve`` as a real process, as a deployment would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.services import free_port


@dataclass
class NodeProcess:
    """A running node: its process, DICOM port and log file."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        """Resident memory now."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    """Block until something accepts connections on the loopback port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


@contextmanager
def run_node(workdir: Path, **settings: str) -> Iterator[NodeProcess]:
    """Upgrade the database and run ``pacs-node serve`` with ``PACS_NODE_*`` settings."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACS_NODE_")}
    env.update(
        {
            "PACS_NODE_PORT": str(port),
            "PACS_NODE_SPOOL_DIR": str(workdir / "spool"),
            "PACS_NODE_DATABASE_URL": f"sqlite:///{workdir}/node.db",
            "PACS_NODE_MIN_FREE_BYTES": "0",
            "PACS_NODE_API_PORT": str(free_port()),
        }
    )
    env.update({f"PACS_NODE_{k.upper()}": v for k, v in settings.items()})
    command = [sys.executable, "-m", "pacs_node.cli"]
    subprocess.run([*command, "db", "upgrade"], env=env, check=True, capture_output=True)
    log = workdir / "node.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*command, "serve"], env=env, stdout=out, stderr=out)
    try:
        wait_for_port(port)
        yield NodeProcess(process, port, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
