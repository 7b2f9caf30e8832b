"""The test helpers that start servers wait for their own process's listener, not any listener."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.helpers.node_process import (
    ExitedBeforeListeningError,
    start_listening,
    wait_for_listener,
)

LISTEN = "import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1',int(sys.argv[1])));"
LISTEN += " s.listen(); time.sleep(60)"


def _python(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", *args])


@contextmanager
def _killed_after(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_a_listener_of_another_process_does_not_count() -> None:
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = foreign.getsockname()[1]
        idle = _python("import time; time.sleep(60)")
        with _killed_after(idle), pytest.raises(TimeoutError):
            wait_for_listener(idle, port, timeout=0.5)


def test_a_server_that_lost_its_port_is_started_again_on_another() -> None:
    ports: list[int] = []

    def spawn(port: int) -> subprocess.Popen[bytes]:
        ports.append(port)
        if len(ports) == 1:  # as serve does when its port was taken: exit without listening
            return _python("raise SystemExit(2)")
        return _python(LISTEN, str(port))

    process, port = start_listening(spawn)
    with _killed_after(process):
        assert len(ports) == 2 and port == ports[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


def test_a_server_that_never_listens_fails_after_its_attempts() -> None:
    spawned: list[int] = []

    def spawn(port: int) -> subprocess.Popen[bytes]:
        spawned.append(port)
        return _python("raise SystemExit(2)")

    with pytest.raises(ExitedBeforeListeningError):
        start_listening(spawn, attempts=2)
    assert len(spawned) == 2
