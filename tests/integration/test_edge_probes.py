"""The live SCP under connection churn: health probes, silent sockets and connection bursts.

A connection that closes before it asks to associate must free its association slot and its
threads at once, not after the ACSE timeout (30 s here), and a burst must not overflow the
listen backlog: real senders get through, each in under 2 s, while it happens.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.helpers.dicom_factory import StudySpec, make_study
from tests.helpers.fuzz import associate_rq
from tests.helpers.node_process import NodeProcess, run_node

pytestmark = pytest.mark.integration

ECHOSCU = "/usr/bin/echoscu"
if not Path(ECHOSCU).exists():
    pytest.skip("DCMTK is not installed (apt-get install dcmtk)", allow_module_level=True)

ACSE_TIMEOUT = 30
# A real sender must get through this fast, whatever the probes do.
SERVICE_SECONDS = 2.0
# Threads of closed probes must be gone well before the ACSE timeout would end them.
THREADS_FREED_SECONDS = 10.0

# One PDU each that is invalid before an A-ASSOCIATE-RQ (pynetdicom Sta2 + Evt19 / Evt10).
GARBAGE_PDUS = (
    struct.pack(">BBI", 0x09, 0, 8) + bytes(8),  # unknown PDU type
    struct.pack(">BBI", 0x04, 0, 6) + struct.pack(">IBB", 2, 1, 0x03),  # P-DATA-TF, too early
)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    with run_node(
        tmp_path / "node",
        max_associations="16",
        acse_timeout=str(ACSE_TIMEOUT),
        quiet_seconds="600",
    ) as running:
        yield running


def thread_count(node: NodeProcess) -> int:
    for line in Path(f"/proc/{node.process.pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError("no Threads: line")


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def idle_threads(node: NodeProcess) -> int:
    """The node's thread count once it has been steady for half a second."""
    readings = [thread_count(node)]

    def steady() -> bool:
        readings.append(thread_count(node))
        return len(readings) >= 5 and len(set(readings[-5:])) == 1

    assert wait_until(steady, 10), f"thread count never settled: {readings}"
    return readings[-1]


def client_ae() -> AE:
    ae = AE(ae_title="PROBE_TEST")
    ae.add_requested_context(Verification)
    ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 15
    return ae


def pynetdicom_echo(port: int) -> None:
    assoc = client_ae().associate("127.0.0.1", port, ae_title="LUMBAR_NODE")
    assert assoc.is_established, "echo association refused or aborted"
    status = assoc.send_c_echo()
    assoc.release()
    assert status.Status == 0


def dcmtk_echo(port: int) -> None:
    done = subprocess.run(
        [ECHOSCU, "-aet", "PROBE_TEST", "-aec", "LUMBAR_NODE", "127.0.0.1", str(port)],
        env={**os.environ, "TCP_NODELAY": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def store(port: int, seed: int) -> None:
    (instance,) = make_study(StudySpec(seed=seed, series=("T2 TSE SAG",), slices=1))
    assoc = client_ae().associate("127.0.0.1", port, ae_title="LUMBAR_NODE")
    assert assoc.is_established, "store association refused or aborted"
    status = assoc.send_c_store(instance)
    assoc.release()
    assert status.Status == 0


class Service:
    """Echoes (pynetdicom and DCMTK) and stores against the node, each timed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seed = 7000
        self.timings: list[tuple[str, float]] = []

    def check(self) -> None:
        self.seed += 1
        for name, call in (
            ("echo", lambda: pynetdicom_echo(self.port)),
            ("echoscu", lambda: dcmtk_echo(self.port)),
            ("store", lambda: store(self.port, self.seed)),
        ):
            started = time.monotonic()
            call()
            self.timings.append((name, round(time.monotonic() - started, 3)))

    def warm_up(self) -> None:
        """A first, untimed round: the node's first association loads what it needs."""
        self.check()
        self.timings.clear()

    def assert_fast(self) -> None:
        slow = [t for t in self.timings if t[1] >= SERVICE_SECONDS]
        assert not slow, f"slower than {SERVICE_SECONDS} s: {slow} of {self.timings}"


def threads_after_close(node: NodeProcess, idle: int) -> list[int]:
    """Thread counts polled until back near ``idle``, or until the deadline."""
    readings: list[int] = []

    def back() -> bool:
        readings.append(thread_count(node))
        return readings[-1] <= idle + 2

    wait_until(back, THREADS_FREED_SECONDS)
    return readings


def probe(port: int, kind: int) -> None:
    """One load-balancer style probe: connect, then close, reset or send garbage and close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if kind < len(GARBAGE_PDUS):
            sock.sendall(GARBAGE_PDUS[kind])
        elif kind == len(GARBAGE_PDUS):  # close with a TCP reset instead of a FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_probes_neither_lock_out_senders_nor_keep_threads(node: NodeProcess) -> None:
    service = Service(node.port)
    service.warm_up()
    idle = idle_threads(node)
    kinds = len(GARBAGE_PDUS) + 2  # garbage PDUs, reset, plain close
    with ThreadPoolExecutor(max_workers=4) as pool:
        probes = [pool.submit(probe, node.port, i % kinds) for i in range(200)]
        while not all(p.done() for p in probes):
            service.check()
        for done in probes:
            done.result()
    service.check()  # right after, while the node still tears the probes down
    service.assert_fast()
    threads = threads_after_close(node, idle)
    assert threads[-1] <= idle + 2, f"probe threads lived on: idle {idle}, then {threads}"


def test_silent_sockets_do_not_lock_out_senders(node: NodeProcess) -> None:
    service = Service(node.port)
    service.warm_up()
    idle = idle_threads(node)
    silent = [socket.create_connection(("127.0.0.1", node.port), timeout=10) for _ in range(50)]
    try:
        service.check()
    finally:
        for sock in silent:
            sock.close()
    service.check()  # at once, while the node sees 50 connections close
    service.assert_fast()
    threads = threads_after_close(node, idle)
    assert threads[-1] <= idle + 2, f"silent socket threads lived on: idle {idle}, then {threads}"


def test_a_burst_of_connections_is_accepted_and_answered(node: NodeProcess) -> None:
    count = 100
    start = threading.Barrier(count)

    def connect() -> tuple[socket.socket, float]:
        start.wait()
        started = time.monotonic()
        sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
        return sock, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=count) as pool:
        connected = list(pool.map(lambda _: connect(), range(count)))
    sockets = [sock for sock, _ in connected]
    try:
        connect_seconds = sorted(round(seconds, 3) for _, seconds in connected)
        assert connect_seconds[-1] < SERVICE_SECONDS, f"connect() times: {connect_seconds}"
        request = associate_rq(calling=b"PROBE_TEST")
        sent = time.monotonic()
        for sock in sockets:
            sock.sendall(request)
        answers = [sock.recv(1)[:1] for sock in sockets]
        answered = time.monotonic() - sent
    finally:
        for sock in sockets:
            sock.close()
    # A-ASSOCIATE-AC up to the association limit, A-ASSOCIATE-RJ beyond it.
    assert set(answers) <= {b"\x02", b"\x03"}, answers
    assert answers.count(b"\x02") >= 1
    assert answered < 5, f"{count} requests answered in {answered:.2f} s"
    service = Service(node.port)
    service.check()  # the aborted associations do not hold their slots
    service.assert_fast()
