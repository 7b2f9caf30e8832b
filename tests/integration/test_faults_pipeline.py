"""Failures real hospitals have, against the real stack (PostgreSQL, Redis, Celery, DCMTK).

A worker killed mid-job, the PACS down then back, the RIS rejecting then accepting, Redis
restarted mid-run, and a study that crashes the analysis: nothing is lost or sent twice under
different identities, and other studies keep flowing.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from bench.e2e.harness import STORESCP, STORESCU, Stack, make_random_checkpoint, run_stack
from tests.helpers.services import Redis, start_redis
from worker.commands.phantom import write_phantom

pytestmark = [pytest.mark.integration, pytest.mark.slow]

if not all(Path(tool).exists() for tool in (STORESCU, STORESCP)):
    pytest.skip("DCMTK is needed", allow_module_level=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture
def own_redis() -> Iterator[Redis]:
    """A Redis this test may restart."""
    server = start_redis()
    yield server
    server.stop()


def wait(
    stack: Stack, sql: str, predicate: object, timeout: float = 60
) -> list[tuple[object, ...]]:
    deadline = time.monotonic() + timeout
    rows: list[tuple[object, ...]] = []
    while time.monotonic() < deadline:
        rows = stack.query(sql)
        if callable(predicate) and predicate(rows):
            return rows
        time.sleep(0.1)
    raise TimeoutError(f"{sql}: {rows}\n{stack.logs()}")


def stored_uids(stack: Stack) -> list[str]:
    return sorted(str(pydicom.dcmread(p).SOPInstanceUID) for p in stack.pacs.files())


def result_uids(stack: Stack) -> list[str]:
    rows = stack.query("SELECT sop_instance_uid FROM results WHERE sop_instance_uid IS NOT NULL")
    return sorted(str(uid) for (uid,) in rows)


def test_worker_killed_mid_job_completes_after_restart(
    tmp_path: Path, postgres_url: str, redis_server: Redis, checkpoint: Path
) -> None:
    study = write_phantom(31, tmp_path / "study", size="small")
    with run_stack(
        tmp_path / "stack",
        database_url=postgres_url,
        broker_url=redis_server.url,
        checkpoint=checkpoint,
    ) as stack:
        worker = stack.start_worker()
        stack.push(study.directory)
        wait(stack, "SELECT state FROM jobs", lambda rows: rows == [("running",)])
        stack.kill_worker(worker)
        stack.start_worker()
        stack.wait_jobs(["done", "failed"])
        ((state, attempts),) = stack.query("SELECT state, attempts FROM jobs")
        assert (state, attempts) == ("done", 2), stack.logs()
        # Exactly one SEG and one SR, with the job's identities, reached the PACS.
        assert stored_uids(stack) == result_uids(stack)
        assert len(stored_uids(stack)) == 2
        assert len(stack.ris.control_ids()) == 1


def test_pacs_down_then_up_and_ris_rejecting_then_accepting(
    tmp_path: Path, postgres_url: str, redis_server: Redis, checkpoint: Path
) -> None:
    study = write_phantom(32, tmp_path / "study", size="small")
    with run_stack(
        tmp_path / "stack",
        database_url=postgres_url,
        broker_url=redis_server.url,
        checkpoint=checkpoint,
        start_pacs=False,
        ris_answers=["AE", "AR"],
    ) as stack:
        stack.start_worker()
        stack.push(study.directory)
        # Deliveries fail and are retried with backoff while the PACS is down.
        wait(
            stack,
            "SELECT attempts, state FROM deliveries WHERE channel = 'dicom'",
            lambda rows: len(rows) == 2 and all(a >= 2 and s == "pending" for a, s in rows),
        )
        assert stack.query("SELECT state FROM jobs") == [("delivering",)]
        stack.pacs.start()
        stack.wait_jobs(["done", "failed"], timeout=60)
        assert stack.query("SELECT state FROM jobs") == [("done",)], stack.logs()
        assert stored_uids(stack) == result_uids(stack)
        ((control_id,),) = stack.query("SELECT control_id FROM results WHERE kind = 'oru'")
        # AE, AR, then AA: the same message (same MSH-10) every time.
        assert stack.ris.control_ids() == [control_id] * 3
        assert len(set(stack.ris.received)) == 1
        assert stack.query(
            "SELECT attempts, last_status FROM deliveries WHERE channel = 'hl7'"
        ) == [(3, "AA")]


def restart_redis(server: Redis) -> None:
    server.stop()
    time.sleep(0.5)
    subprocess.run(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(server.port),
            "--save",
            "",
            "--daemonize",
            "yes",
            "--pidfile",
            str(server.pidfile),
        ],
        check=True,
        capture_output=True,
    )


def test_redis_restarted_mid_run_loses_no_job(
    tmp_path: Path, postgres_url: str, own_redis: Redis, checkpoint: Path
) -> None:
    first = write_phantom(33, tmp_path / "first", size="small")
    second = write_phantom(34, tmp_path / "second", size="small")
    with run_stack(
        tmp_path / "stack",
        database_url=postgres_url,
        broker_url=own_redis.url,
        checkpoint=checkpoint,
    ) as stack:
        stack.start_worker()
        stack.push(first.directory)
        wait(stack, "SELECT state FROM jobs", lambda rows: len(rows) == 1)
        own_redis.stop()  # messages in flight are lost (no persistence)
        stack.push(second.directory)  # completed while the broker is down
        wait(stack, "SELECT state FROM jobs", lambda rows: len(rows) == 2)
        restart_redis(own_redis)
        stack.wait_jobs(["done", "failed"], count=2, timeout=120)
        assert [s for _, s, _ in stack.query("SELECT id, state, reason FROM jobs")] == [
            "done",
            "done",
        ], stack.logs()
        assert stored_uids(stack) == result_uids(stack)
        assert len(stored_uids(stack)) == 4


def poison(study_dir: Path) -> None:
    """Tilt one SAG_T2 slice to axial: the SCP stores it, but the series is no volume."""
    path = sorted((study_dir / "02_SAG_T2").glob("*.dcm"))[1]
    dataset = pydicom.dcmread(path)
    dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    dataset.save_as(path)


def test_study_that_crashes_the_analysis_fails_after_the_cap_and_others_flow(
    tmp_path: Path, postgres_url: str, redis_server: Redis, checkpoint: Path
) -> None:
    bad = write_phantom(35, tmp_path / "bad", size="small")
    good = write_phantom(36, tmp_path / "good", size="small")
    poison(bad.directory)
    with run_stack(
        tmp_path / "stack",
        database_url=postgres_url,
        broker_url=redis_server.url,
        checkpoint=checkpoint,
        policy={"MAX_ATTEMPTS": "2"},
    ) as stack:
        stack.start_worker()
        stack.push(bad.directory)
        stack.push(good.directory)
        stack.wait_jobs(["done", "failed"], count=2, timeout=120)
        rows = stack.query(
            "SELECT s.study_instance_uid, j.state, j.attempts, j.reason FROM jobs j "
            "JOIN studies s ON s.id = j.study_id"
        )
        outcome = {uid: (state, attempts, reason) for uid, state, attempts, reason in rows}
        state, attempts, reason = outcome[bad.study_instance_uid]
        assert (state, attempts) == ("failed", 2)
        assert "not parallel" in str(reason), reason
        assert outcome[good.study_instance_uid][0] == "done"
        assert len(stored_uids(stack)) == 2
