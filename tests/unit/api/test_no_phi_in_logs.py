"""Canary: patient identifiers pushed through the running node never reach its logs or metrics.

The node (SCP, assembly, admin API) receives a study whose names, IDs and UIDs are canaries; the
admin API is then queried by those identifiers (which land in URLs and bodies). Every log record
of the process, at DEBUG, is searched for them. The analysis and delivery workers join this test
through the embedded worker when their stack is present.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage
from pynetdicom import AE
from sqlalchemy import select

from pacs_node.api.tokens import Role, create_token
from pacs_node.config import Settings
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.db.tables import Job
from pacs_node.service import EdgeService
from tests.helpers.dicom_factory import StudySpec, make_study

CANARY_NAME = "Zebulonqx^Canarywyn"
CANARY_ID = "CANARY-PID-7731"
CANARY_ACCESSION = "CANACC9931"
CLIENT_LOGGERS = ("httpx", "httpcore")


class CanaryQueue:
    """The broker, as far as the edge is concerned: records what was enqueued."""

    def __init__(self) -> None:
        self.jobs: list[int] = []

    def enqueue(self, job_id: int) -> None:
        self.jobs.append(job_id)

    def enqueue_delivery(self, job_id: int) -> None:
        self.jobs.append(job_id)

    def stop(self) -> None:
        """Nothing to release."""


def send(port: int, datasets: list[Dataset]) -> None:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="LUMBAR_NODE")
    assert assoc.is_established
    for ds in datasets:
        assert assoc.send_c_store(ds).Status == 0
    assoc.release()


def test_canary_identifiers_stay_out_of_logs_and_metrics(
    postgres_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = StudySpec(seed=31, series=("T1 TSE SAG", "T2 TSE SAG"), slices=2, patient_id=CANARY_ID)
    datasets = make_study(spec)
    for ds in datasets:
        ds.PatientName = CANARY_NAME
        ds.AccessionNumber = CANARY_ACCESSION
    canaries = {
        "Zebulonqx",
        "Canarywyn",
        CANARY_ID,
        CANARY_ACCESSION,
        spec.study_uid,
        *(ds.SeriesInstanceUID for ds in datasets),
        *(ds.SOPInstanceUID for ds in datasets),
    }
    settings = Settings(
        port=0,
        api_port=0,
        spool_dir=tmp_path / "spool",
        database_url=postgres_url,
        quiet_seconds=1.0,
        release_grace_seconds=0.2,
        min_free_bytes=0,
    )
    caplog.set_level(logging.DEBUG)
    # As configure_logging does: pynetdicom's PDU dumps stay at DEBUG, below the node's level.
    monkeypatch.setattr(logging.getLogger("pynetdicom"), "level", logging.WARNING)
    service = EdgeService.start(settings, queue=CanaryQueue())
    try:
        send(service.scp.port, datasets)
        engine = make_engine(postgres_url)
        sessions = make_session_factory(engine)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with sessions() as session:
                if session.scalar(select(Job.id)) is not None:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("no job was created")
        with sessions.begin() as session:
            _, secret = create_token(session, "canary-admin", Role.ADMIN)
        base = f"http://127.0.0.1:{service.api.port}"
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}) as api:
            found = api.get("/api/jobs", params={"patient_id": CANARY_ID}).json()["items"]
            assert [job["accession_number"] for job in found] == [CANARY_ACCESSION]
            by_uid = api.get("/api/jobs", params={"study_instance_uid": spec.study_uid})
            assert by_uid.json()["items"] == found
            assert api.get(f"/api/jobs/{found[0]['id']}").status_code == 200
            again = api.post(
                "/api/studies/force-complete", json={"study_instance_uid": spec.study_uid}
            )
            assert again.status_code == 409  # already complete
            metrics = api.get("/metrics").text
        engine.dispose()
    finally:
        service.stop()
    assert 'pacs_node_instances_received_total{origin="source"} 4.0' in metrics
    logged = "\n".join(
        f"{record.name} {record.getMessage()} {record.exc_text or ''}"
        for record in caplog.records
        if not record.name.startswith(CLIENT_LOGGERS)  # the test's own HTTP client
    )
    assert "GET /api/jobs 200" in logged  # the API did log its requests
    leaked = sorted(c for c in canaries if c in logged or c in metrics)
    assert leaked == [], leaked
