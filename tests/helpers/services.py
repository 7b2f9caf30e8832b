"""Real servers for tests: a throw-away PostgreSQL cluster and Redis on loopback ports.

Started as a CI job would start them (the Debian binaries; ``initdb`` runs as the ``postgres``
user because it refuses root). Each server is stopped by its PID when the test session ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Postgres:
    """A running PostgreSQL cluster."""

    data_dir: Path
    port: int
    user: str = "pacs"

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database``."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Stop the server and remove its files."""
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop"])
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def _as_postgres(cmd: list[str]) -> None:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True)


def start_postgres() -> Postgres:
    """initdb a cluster in a temporary folder and start it (fsync off: tests only)."""
    base = Path(tempfile.mkdtemp(prefix="pg-"))
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "pacs", "--auth=trust"])
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {sockets} -c fsync=off"
    options += " -c max_connections=200"
    # -l: the server must not inherit our pipes, or waiting for pg_ctl never ends.
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    log = base / "server.log"
    _as_postgres(
        [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options, "start"]
    )
    return Postgres(data, port)


@dataclass
class Redis:
    """A running Redis server."""

    port: int
    pidfile: Path

    @property
    def url(self) -> str:
        """Broker URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Stop the server."""
        if self.pidfile.exists():
            pid = int(self.pidfile.read_text().strip())
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                return
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)


def start_redis() -> Redis:
    """Start a Redis server on a free loopback port, no persistence."""
    port = free_port()
    pidfile = Path(tempfile.mkdtemp(prefix="redis-")) / "redis.pid"
    subprocess.run(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--daemonize",
            "yes",
            "--pidfile",
            str(pidfile),
        ],
        check=True,
        capture_output=True,
    )
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return Redis(port, pidfile)
        time.sleep(0.05)
    raise RuntimeError("redis did not start")
