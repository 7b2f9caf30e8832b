"""The SCP's event-driven transport: every association's wake-up descriptor is closed when it
ends, and an idle association waits instead of polling."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from pacs_node.config import Settings
from pacs_node.db.ledger import InstanceLedger
from pacs_node.db.migrate import upgrade
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.scp.server import RunningSCP, start_scp
from pacs_node.spool import Spool


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[RunningSCP]:
    url = f"sqlite:///{tmp_path}/node.db"
    upgrade(url)
    engine = make_engine(url)
    settings = dataclasses.replace(Settings(), port=0, spool_dir=tmp_path / "spool")
    running = start_scp(
        settings, Spool(settings.spool_dir), InstanceLedger(make_session_factory(engine))
    )
    yield running
    running.stop()
    engine.dispose()


def open_descriptors() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def echo_client() -> AE:
    """A requestor proposing Verification only."""
    ae = AE(ae_title="TESTER")
    ae.add_requested_context(Verification)
    return ae


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_each_association_closes_its_wake_up_descriptor(scp: RunningSCP) -> None:
    ae = echo_client()
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="LUMBAR_NODE")
    assert assoc.is_established and assoc.send_c_echo().Status == 0
    assoc.release()
    assert wait_for(lambda: not scp.ae.active_associations)
    before = open_descriptors()
    for _ in range(20):
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="LUMBAR_NODE")
        assert assoc.is_established and assoc.send_c_echo().Status == 0
        assoc.release()
    assert wait_for(lambda: not scp.ae.active_associations and open_descriptors() <= before)


def thread_cpu_ticks(*threads: threading.Thread) -> int:
    """User + system CPU of ``threads`` so far, in clock ticks (10 ms)."""
    ticks = 0
    for thread in threads:
        fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        utime, stime = fields.rsplit(")", 1)[1].split()[11:13]
        ticks += int(utime) + int(stime)
    return ticks


def test_an_idle_association_waits_instead_of_polling(scp: RunningSCP) -> None:
    """An idle association's two threads cost far less CPU than pynetdicom's own, which poll
    every millisecond; both are measured over the same seconds, so load affects both."""
    stock = AE(ae_title="STOCK")
    stock.add_supported_context(Verification)
    stock_server = stock.start_server(("127.0.0.1", 0), block=False)
    assert stock_server is not None
    client = echo_client()
    ours = client.associate("127.0.0.1", scp.port, ae_title="LUMBAR_NODE")
    theirs = client.associate("127.0.0.1", stock_server.server_address[1], ae_title="STOCK")
    try:
        assert ours.is_established and theirs.is_established
        assert wait_for(lambda: len(scp.ae.active_associations) == 1)
        assert wait_for(lambda: len(stock.active_associations) == 1)
        acceptors = [scp.ae.active_associations[0], stock.active_associations[0]]
        before = [thread_cpu_ticks(a, a.dul) for a in acceptors]

        def spent() -> tuple[int, int]:
            ours_now, stock_now = (
                thread_cpu_ticks(a, a.dul) - b for a, b in zip(acceptors, before, strict=True)
            )
            return ours_now, stock_now

        # Idle on purpose until pynetdicom's polling has spent 80 ms (8 ticks of 10 ms; ~3 s on
        # an idle machine): the bounded waits spend 0-1 ticks meanwhile.
        assert wait_for(lambda: spent()[1] >= 8)
        ours_spent, stock_spent = spent()
        assert 2 * ours_spent < stock_spent, (ours_spent, stock_spent)
        assert acceptors[0].is_established
    finally:
        ours.release()
        theirs.release()
        stock.shutdown()
