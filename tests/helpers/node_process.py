"""Run ``pacs-node serve`` as a real process, as a deployment would."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.services import free_port


@dataclass
class NodeProcess:
    """A running node: its process, DICOM port and log file."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    """Its ``PACS_NODE_*`` settings, for ``pacs-node`` commands against the same node."""

    @property
    def api_url(self) -> str:
        """The base URL of its HTTP API (listening before its DICOM port is)."""
        return f"http://127.0.0.1:{self.env['PACS_NODE_API_PORT']}"

    def query(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        """Rows of ``sql`` (with ``?`` placeholders for ``args``) in the node's SQLite database."""
        with sqlite3.connect(self.log.parent / "node.db") as conn:
            return conn.execute(sql, args).fetchall()

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


class ExitedBeforeListeningError(RuntimeError):
    """A server process ended before it listened on its port."""


def _listening_inode(port: int) -> str | None:
    """The inode of the socket listening on 127.0.0.1:``port`` (or any address), if any."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, local_port = fields[1].split(":")
        listening = fields[3] == "0A"
        if listening and int(local_port, 16) == port and address in ("0100007F", "00000000"):
            return fields[9]
    return None


def _holds_socket(pid: int, inode: str) -> bool:
    target = Path(f"socket:[{inode}]")
    try:
        return any(fd.readlink() == target for fd in Path(f"/proc/{pid}/fd").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_for_listener(process: subprocess.Popen[bytes], port: int, timeout: float = 60.0) -> None:
    """Block until ``process`` itself listens on the loopback ``port``.

    A listener of another process does not count: a port that :func:`free_port` returned can
    be taken by a parallel test before this process binds it.

    Raises:
        ExitedBeforeListeningError: if the process ends first (for a server that refuses a taken
            port, the caller may start it again on another).
        TimeoutError: if it does not listen in time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ExitedBeforeListeningError(f"exited with {process.returncode} before listening")
        inode = _listening_inode(port)
        if inode is not None and _holds_socket(process.pid, inode):
            return
        time.sleep(0.05)
    raise TimeoutError(f"process {process.pid} is not listening on {port}")


def start_listening(
    spawn: Callable[[int], subprocess.Popen[bytes]], attempts: int = 3
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a server with ``spawn(port)`` on a free port; if it ends without listening (the
    port was taken meanwhile), start it again on another.

    Returns:
        The listening process and its port.

    Raises:
        ExitedBeforeListeningError: if every attempt ended without listening.
        TimeoutError: if the server does not listen in time.
    """
    for _ in range(attempts - 1):
        try:
            return _start_once(spawn)
        except ExitedBeforeListeningError:
            continue
    return _start_once(spawn)


def _start_once(
    spawn: Callable[[int], subprocess.Popen[bytes]],
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = spawn(port)
    wait_for_listener(process, port)
    return process, port


@contextmanager
def run_node(workdir: Path, **settings: str) -> Iterator[NodeProcess]:
    """Upgrade the database and run ``pacs-node serve`` with ``PACS_NODE_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACS_NODE_")}
    env.update(
        {
            "PACS_NODE_SPOOL_DIR": str(workdir / "spool"),
            "PACS_NODE_DATABASE_URL": f"sqlite:///{workdir}/node.db",
            "PACS_NODE_MIN_FREE_BYTES": "0",
        }
    )
    env.update({f"PACS_NODE_{k.upper()}": v for k, v in settings.items()})
    command = [sys.executable, "-m", "worker.main"]
    subprocess.run([*command, "db", "upgrade"], env=env, check=True, capture_output=True)
    log = workdir / "node.log"

    def spawn(port: int) -> subprocess.Popen[bytes]:
        env.update({"PACS_NODE_PORT": str(port), "PACS_NODE_API_PORT": str(free_port())})
        with log.open("ab") as out:
            return subprocess.Popen([*command, "serve"], env=env, stdout=out, stderr=out)

    process, port = start_listening(spawn)
    try:
        node_env = {k: v for k, v in env.items() if k.startswith("PACS_NODE_")}
        yield NodeProcess(process, port, log, node_env)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def holds_listener(pid: int, port: int) -> bool:
    """True if process ``pid`` holds a socket listening on ``port`` (several processes may,
    sharing it with ``SO_REUSEPORT``)."""
    inodes = [
        fields[9]
        for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port
    ]
    return any(_holds_socket(pid, inode) for inode in inodes)


def children_of(pid: int) -> set[int]:
    """The processes whose parent is ``pid``."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def wait_for_extra_processes(node: NodeProcess, count: int, timeout: float = 120.0) -> set[int]:
    """The serving process's ``count`` children, once each listens on the node's port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        extra = children_of(node.process.pid)
        if len(extra) == count and all(holds_listener(pid, node.port) for pid in extra):
            return extra
        time.sleep(0.1)
    raise AssertionError(f"{count} extra SCP processes are not listening:\n{node.log.read_text()}")
