"""End to end: storescu -> pacs-node serve -> Celery worker -> storescp (PACS) and MLLP (RIS).

Real PostgreSQL, Redis, Celery worker processes, DCMTK peers and a tiny checkpoint of the real
model; the embedded mode (SQLite, no broker) runs the same path in one process, and returns a
study out of intended use as a not-analysed SR.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest

from bench.e2e.harness import STORESCP, STORESCU, Stack, make_random_checkpoint, run_stack
from models.checkpoint import file_sha256
from tests.helpers.dicom_factory import StudySpec, write_study
from tests.helpers.services import Redis
from tests.unit.worker.conftest import assert_not_analysed_sr
from worker.commands.phantom import write_phantom
from worker.phantom import WrittenStudy
from worker.phantom.truth import read_truth

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DCIODVFY = "/usr/bin/dciodvfy"
if not all(Path(tool).exists() for tool in (STORESCU, STORESCP, DCIODVFY)):
    pytest.skip("DCMTK and dicom3tools are needed", allow_module_level=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def iod_errors(path: Path) -> list[str]:
    """dciodvfy's error lines for a file."""
    checked = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in checked.stderr.splitlines() if line.startswith("Error")]


def assert_no_patient_data_in_logs(stack: Stack, study: WrittenStudy) -> None:
    """Names, IDs, UIDs and report text stay in the database and the objects, not the logs."""
    first = pydicom.dcmread(next(study.directory.rglob("*.dcm")), stop_before_pixels=True)
    canaries = [
        str(first.PatientID),
        str(first.PatientName).split("^")[-1],
        str(first.AccessionNumber),
        study.study_instance_uid,
        str(first.SeriesInstanceUID),
        *read_truth(study.directory)["report"].split(".")[:2],
    ]
    logs = {p.name: p.read_text(errors="replace") for p in stack.workdir.glob("*.log")}
    logs.pop("storescp.log", None)  # the stand-in PACS, not the node
    assert logs
    for name, text in logs.items():
        leaked = [c for c in canaries if c.strip() and c.strip() in text]
        assert not leaked, f"{name} contains {leaked}"


def assert_delivered(stack: Stack, checkpoint: Path) -> None:
    """Exactly the job's SEG and SR reached the PACS, valid; the RIS got its ORU once."""
    ((job_id, state, _),) = stack.query("SELECT id, state, reason FROM jobs")
    assert state == "done", stack.logs()
    results = dict(stack.query("SELECT kind, coalesce(sop_instance_uid, control_id) FROM results"))
    stored = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in stack.pacs.files()}
    assert set(stored) == {results["seg"], results["sr"]}
    for path in stored.values():
        assert iod_errors(path) == [], path
    assert stack.ris.control_ids() == [results["oru"]]
    ((model, config_hash, sha),) = stack.query(
        "SELECT model_name, config_hash, checkpoint_sha256 FROM jobs WHERE id = :id", id=job_id
    )
    assert (model, sha) == ("lumbar-textguided", file_sha256(checkpoint)) and config_hash
    states = [s for (s,) in stack.query("SELECT state FROM job_events ORDER BY id")]
    assert states == ["queued", "running", "results_ready", "delivering", "notifying", "done"]


def test_celery_worker_end_to_end(
    tmp_path: Path, postgres_url: str, redis_server: Redis, checkpoint: Path
) -> None:
    study = write_phantom(21, tmp_path / "study", size="small")
    with run_stack(
        tmp_path / "stack",
        database_url=postgres_url,
        broker_url=redis_server.url,
        checkpoint=checkpoint,
    ) as stack:
        stack.start_worker()
        stack.push(study.directory)
        stack.wait_jobs(["done", "failed"])
        assert_delivered(stack, checkpoint)
        assert_no_patient_data_in_logs(stack, study)


def test_embedded_mode_end_to_end(tmp_path: Path, checkpoint: Path) -> None:
    study = write_phantom(22, tmp_path / "study", size="small")
    with run_stack(
        tmp_path / "stack",
        database_url=f"sqlite:///{tmp_path}/node.db",
        broker_url="embedded",
        checkpoint=checkpoint,
    ) as stack:
        stack.push(study.directory)
        stack.wait_jobs(["done", "failed"])
        assert_delivered(stack, checkpoint)
        assert_no_patient_data_in_logs(stack, study)


def test_study_out_of_intended_use_reaches_the_pacs_as_a_not_analysed_sr(tmp_path: Path) -> None:
    reason = "body part KNEE is not the lumbar spine"
    spec = StudySpec(seed=31, series=("T2 TSE SAG",), slices=2, body_part="KNEE")
    files = write_study(spec, tmp_path / "study")
    with run_stack(
        tmp_path / "stack",
        database_url=f"sqlite:///{tmp_path}/node.db",
        broker_url="embedded",
        checkpoint=None,
    ) as stack:
        stack.push(tmp_path / "study")
        ((_, state, job_reason),) = stack.wait_jobs(["skipped", "failed"])
        assert (state, job_reason) == ("skipped", reason), stack.logs()
        ((kind, sop_instance_uid),) = stack.query("SELECT kind, sop_instance_uid FROM results")
        (stored,) = stack.pacs.files()
        assert (kind, str(pydicom.dcmread(stored).SOPInstanceUID)) == ("sr", sop_instance_uid)
        assert_not_analysed_sr(stored.read_bytes(), pydicom.dcmread(files[0]), reason)
        assert iod_errors(stored) == []
        assert stack.ris.control_ids() == []  # by default no ORU^R01 for a study not analysed
        states = [s for (s,) in stack.query("SELECT state FROM job_events ORDER BY id")]
        assert states == [
            "queued",
            "running",
            "results_ready",
            "delivering",
            "notifying",
            "skipped",
        ]
