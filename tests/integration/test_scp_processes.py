"""Several SCP processes on one port (``PACS_NODE_SCP_PROCESSES``), against DCMTK senders: each
process listens, parallel ``storescu`` senders are all stored once, and the extra processes end
with the serving one, whether it stops or is killed."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.dicom_factory import StudySpec, write_study
from tests.helpers.node_process import NodeProcess, run_node, wait_for_extra_processes

pytestmark = pytest.mark.integration

STORESCU = "/usr/bin/storescu"
if not Path(STORESCU).exists():
    pytest.skip("DCMTK is not installed (apt-get install dcmtk)", allow_module_level=True)


def wait_until_gone(pids: set[int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = {pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)}
        if not alive:
            return
        time.sleep(0.1)
    raise AssertionError(f"processes {sorted(alive)} still run")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def push(node: NodeProcess, parts: list[list[Path]]) -> None:
    senders = [
        subprocess.Popen(
            [STORESCU, "-aec", "LUMBAR_NODE", "-aet", f"SENDER{i}", "127.0.0.1", str(node.port)]
            + [str(path) for path in part],
            env={**os.environ, "TCP_NODELAY": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i, part in enumerate(parts)
    ]
    for sender in senders:
        _, err = sender.communicate(timeout=300)
        assert sender.returncode == 0, err.decode()[-2000:]


def test_three_processes_share_the_port_and_store_every_instance_once(tmp_path: Path) -> None:
    files = write_study(
        StudySpec(seed=41, series=("T1 TSE SAG", "T2 TSE SAG"), slices=30, size=64),
        tmp_path / "study",
    )
    with run_node(tmp_path / "node", scp_processes="3", quiet_seconds="600") as node:
        extra = wait_for_extra_processes(node, 2)
        # Eight senders: the kernel spreads their connections over the three processes.
        push(node, [files[i::8] for i in range(8)])
        # The same instances again, from one sender: repeats, kept once.
        push(node, [files])
        rows = node.query("SELECT sop_instance_uid, times_received FROM instances")
        assert sorted(uid for uid, _ in rows) == sorted(path.stem for path in files)
        assert {times for _, times in rows} == {2}
        spooled = list((tmp_path / "node" / "spool").rglob("*.dcm"))
        assert len(spooled) == len(files)
        node.process.kill()  # no chance to stop its children: they notice it is gone
        wait_until_gone(extra)


def test_extra_processes_stop_with_the_serving_one(tmp_path: Path) -> None:
    with run_node(tmp_path / "node", scp_processes="2") as node:
        extra = wait_for_extra_processes(node, 1)
    assert node.process.returncode == 0
    wait_until_gone(extra, timeout=5)  # stopped before the serving process exited
    assert "Traceback" not in node.log.read_text()
