"""DCMTK peers against a real `pacs-node serve` process, on PostgreSQL with a Redis broker."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from tests.helpers.dicom_factory import StudySpec, write_study
from tests.helpers.node_process import run_node
from tests.helpers.services import Redis

pytestmark = pytest.mark.integration

ECHOSCU, STORESCU = "/usr/bin/echoscu", "/usr/bin/storescu"
if not (Path(ECHOSCU).exists() and Path(STORESCU).exists()):
    pytest.skip("DCMTK is not installed (apt-get install dcmtk)", allow_module_level=True)

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def dcmtk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=DCMTK_ENV, capture_output=True, text=True, timeout=60)


def wait_for(query: str, url: str, expected: object, timeout: float = 120) -> object:
    engine = create_engine(url)
    deadline = time.monotonic() + timeout
    value: object = None
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                value = conn.execute(text(query)).all()
            if value == expected:
                return value
            time.sleep(0.2)
    finally:
        engine.dispose()
    raise AssertionError(f"{query!r}: {value!r} != {expected!r}")


def test_echo_store_split_study_and_broker_handoff(
    tmp_path: Path, postgres_url: str, redis_server: Redis
) -> None:
    spec = StudySpec(seed=11, series=("T1 TSE SAG", "T2 TSE SAG", "T2 TSE AX"), slices=4)
    files = write_study(spec, tmp_path / "study")
    first, second = files[:6], files[6:]
    queue = redis.Redis.from_url(redis_server.url)
    queue.delete("gpu")
    with run_node(
        tmp_path,
        database_url=postgres_url,
        broker_url=redis_server.url,
        allowed_aes="MODALITY,PACS",
        quiet_seconds="4",
        release_grace_seconds="30",
    ) as node:
        port = str(node.port)
        echo = dcmtk(ECHOSCU, "-aet", "PACS", "-aec", "LUMBAR_NODE", "127.0.0.1", port)
        assert echo.returncode == 0, echo.stderr
        # An unknown calling AE is rejected at association.
        refused = dcmtk(ECHOSCU, "-aet", "INTRUDER", "-aec", "LUMBAR_NODE", "127.0.0.1", port)
        assert refused.returncode != 0
        # One study over two associations from two senders.
        for sender, part in (("MODALITY", first), ("PACS", second)):
            sent = dcmtk(
                STORESCU, "-aet", sender, "-aec", "LUMBAR_NODE", "127.0.0.1", port, *map(str, part)
            )
            assert sent.returncode == 0, sent.stderr
        wait_for(
            "SELECT state, version, trigger FROM jobs",
            postgres_url,
            [("queued", 1, "quiet_period")],
        )
        # Only after the job row committed did the broker get its message.
        deadline = time.monotonic() + 60
        while queue.llen("gpu") == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert queue.llen("gpu") >= 1
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM instances")).scalar() == len(files)
        roles = sorted(r for (r,) in conn.execute(text("SELECT role FROM series")))
        assert roles == ["AX_T2", "SAG_T1", "SAG_T2"]
        rejected = conn.execute(text("SELECT calling_ae, reason FROM receive_errors")).all()
        reason = "association rejected: calling AE INTRUDER is not allowed"
        assert rejected == [("INTRUDER", reason)]
    engine.dispose()
    stored = sorted(p.name for p in (tmp_path / "spool").rglob("*.dcm"))
    assert stored == sorted(p.name for p in files)
    # The node's log names each association, echo and refusal, but no patient data.
    log = node.log.read_text()
    assert "INTRUDER" in log and spec.patient_id not in log and spec.study_uid not in log
    peer = r"at 127\.0\.0\.1:\d+"
    assert re.search(rf"INFO pacs_node\.scp\.handlers: C-ECHO from PACS {peer}: success", log)
    assert re.search(rf"association from MODALITY {peer} accepted", log)
    stored = rf"association from MODALITY {peer} released: {len(first)} source images stored"
    assert re.search(stored, log)
    assert re.search(rf"WARNING .*calling AE INTRUDER is not allowed \(from INTRUDER {peer}\)", log)


def test_released_association_with_sagittal_t2_completes_early(tmp_path: Path) -> None:
    spec = StudySpec(seed=12, series=("T2 TSE SAG",), slices=3)
    files = write_study(spec, tmp_path / "study")
    with run_node(tmp_path, quiet_seconds="600", release_grace_seconds="0.5") as node:
        sent = dcmtk(STORESCU, "-aec", "LUMBAR_NODE", "127.0.0.1", str(node.port), *map(str, files))
        assert sent.returncode == 0, sent.stderr
        wait_for(
            "SELECT trigger FROM jobs",
            f"sqlite:///{tmp_path}/node.db",
            [("released_with_protocol",)],
            timeout=60,
        )
