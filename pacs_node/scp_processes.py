"""Extra SCP processes of ``serve`` (``scp_processes`` > 1): each accepts associations on the
node's DICOM port (``SO_REUSEPORT``; the kernel spreads connections across processes) and
stores into the same spool and database, so several senders use several CPU cores instead of
sharing one interpreter lock.

An extra process runs only the SCP (C-ECHO, C-STORE, storage commitment reports); the serving
process keeps the assembly, the reconciler, the admin API and the worker queue. The parent
hands each child its settings and the bound port through a pipe, waits until it listens, and
stops it with SIGTERM; a child whose parent is gone (killed) stops by itself within a second.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

from pacs_node.config import Settings
from pacs_node.errors import StartupError

LOG = logging.getLogger(__name__)

READY = b"listening\n"
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 30.0
PARENT_CHECK_SECONDS = 1.0


@dataclass
class ScpProcesses:
    """The running extra SCP processes."""

    processes: list[subprocess.Popen[bytes]]

    @classmethod
    def start(cls, settings: Settings, port: int, count: int) -> ScpProcesses:
        """Start ``count`` processes listening on ``port`` and wait until each listens.

        Raises:
            StartupError: if one ends or stays silent before listening (the others are stopped).
        """
        started = cls([])
        try:
            for _ in range(count):
                started.processes.append(_spawn(settings, port))
            for process in started.processes:
                _wait_until_listening(process)
        except BaseException:
            started.stop()
            raise
        LOG.info("%d more SCP processes listening on port %d", count, port)
        return started

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after a grace period)."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                LOG.warning("an SCP process did not stop in time; killing it")
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def _spawn(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", __name__],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdin is not None
    process.stdin.write(pickle.dumps((dataclasses.replace(settings, port=port), os.getpid())))
    process.stdin.close()
    return process


def _wait_until_listening(process: subprocess.Popen[bytes]) -> None:
    assert process.stdout is not None
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(START_TIMEOUT_SECONDS)
    if line != [READY]:
        raise StartupError(
            f"an extra SCP process did not start listening (exit status {process.poll()})"
        )


def run_child(settings: Settings, parent_pid: int) -> int:
    """The child's life: start the SCP on the shared port, say so, serve until told to stop or
    the parent is gone."""
    from pacs_node.db.ledger import InstanceLedger
    from pacs_node.db.session import make_engine, make_session_factory
    from pacs_node.dispatch.commitment import CommitmentLedger
    from pacs_node.scp.server import start_scp
    from pacs_node.service import make_queue
    from pacs_node.spool import Spool

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    queue = make_queue(settings)
    commitments = CommitmentLedger(sessions, settings.policy, queue.enqueue_delivery)
    scp = start_scp(
        settings,
        Spool(settings.spool_dir, settings.min_free_bytes),
        InstanceLedger(sessions),
        commitments,
        shared_port=True,
    )
    sys.stdout.buffer.write(READY)
    sys.stdout.flush()
    try:
        while not stop.wait(PARENT_CHECK_SECONDS):
            if os.getppid() != parent_pid:
                LOG.warning("the serving process is gone; this SCP process stops")
                break
    finally:
        scp.stop()
        queue.stop()
        engine.dispose()
    return 0


def main() -> int:
    """Entry point of a child: settings and the parent's pid arrive pickled on stdin."""
    from pacs_node.logs import configure_logging

    # The pipe comes from the serving process that started this one, never from outside.
    settings, parent_pid = pickle.loads(sys.stdin.buffer.read())  # noqa: S301
    configure_logging(settings.log_level, settings.log_format)
    return run_child(settings, parent_pid)


if __name__ == "__main__":
    raise SystemExit(main())
