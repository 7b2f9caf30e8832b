"""A DICOMweb destination against a real PACS: Orthanc's STOW-RS behind HTTP basic authentication.

A job's SEG and SR go through the real delivery stage, recorded, retried with backoff,
dead-lettered and replayed like any other destination's; the credentials never reach a log line,
a repr or an error record.
"""

from __future__ import annotations

import base64
import logging
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.config import Settings, load_settings
from pacs_node.db.admin_actions import replay_deliveries
from pacs_node.db.base import utcnow
from pacs_node.db.tables import Delivery, Job, Result
from pacs_node.domain import JobState
from pacs_node.spool import Spool
from tests.helpers.node_process import wait_for_listener
from tests.helpers.orthanc import DICOMWEB_PLUGIN, ORTHANC, Orthanc, run_orthanc
from tests.unit.worker.conftest import FakePredictor, RecordingQueue, phantom_study  # noqa: F401
from tests.unit.worker.test_runner import received_study
from worker.delivery import DeliveryStage
from worker.phantom import WrittenStudy
from worker.runner import JobRunner

pytestmark = [pytest.mark.integration, pytest.mark.slow]

if not (ORTHANC.exists() and DICOMWEB_PLUGIN.exists()):
    pytest.skip("Orthanc and its DICOMweb plugin are needed", allow_module_level=True)

USER, PASSWORD, WRONG_PASSWORD = "node", "Orthanc-pw-7", "not-the-pw-3"
NAME = "orthanc"
SECRETS = (
    PASSWORD,
    WRONG_PASSWORD,
    base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
    base64.b64encode(f"{USER}:{WRONG_PASSWORD}".encode()).decode(),
)
REFUSED = "authentication refused (HTTP 401)"


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    with run_orthanc(tmp_path / "orthanc", users={USER: PASSWORD}) as running:
        yield running


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record at DEBUG, httpx's and httpcore's included."""
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def node_settings(
    tmp_path: Path, orthanc: Orthanc, password: str = PASSWORD, **limits: Any
) -> Settings:
    """The node's settings: Orthanc's STOW-RS as the only destination, retries an hour apart."""
    environ = {
        "PACS_NODE_DESTINATIONS": f"{NAME}=http://127.0.0.1:{orthanc.http_port}/dicom-web",
        "PACS_NODE_DICOMWEB_CREDENTIALS": f"{NAME}=basic:{USER}:{password}",
    }
    return load_settings(
        environ=environ,
        spool_dir=str(tmp_path / "spool"),
        dimse_timeout=30,
        delivery_backoff_seconds=3600,
        **limits,
    )


def analysed_job(sessions: sessionmaker[Session], settings: Settings, study: WrittenStudy) -> int:
    """A received study analysed into results, deliveries created: ``results_ready``."""
    runner = JobRunner(
        settings=settings,
        sessions=sessions,
        spool=Spool(settings.spool_dir),
        queue=RecordingQueue(),
        predictor_factory=FakePredictor,
    )
    job_id = received_study(sessions, runner.spool, study)
    assert runner.analyse(job_id)
    return job_id


def deliver(sessions: sessionmaker[Session], settings: Settings, job_id: int) -> JobState | None:
    return DeliveryStage(settings, sessions, Spool(settings.spool_dir)).run(job_id)


def deliveries(sessions: sessionmaker[Session]) -> list[tuple[Any, ...]]:
    """Each delivery's destination, state, attempts, last status and last error."""
    columns = (
        Delivery.destination,
        Delivery.state,
        Delivery.attempts,
        Delivery.last_status,
        Delivery.last_error,
    )
    with sessions() as session:
        return [tuple(row) for row in session.execute(select(*columns).order_by(Delivery.id))]


def retry_due_in(sessions: sessionmaker[Session]) -> list[timedelta]:
    with sessions() as session:
        due = session.scalars(select(Delivery.next_attempt_at).order_by(Delivery.id)).all()
    return [at - utcnow() for at in due if at is not None]


def make_due(sessions: sessionmaker[Session]) -> None:
    """Move every retry into the past, as the passing of the backoff would."""
    with sessions.begin() as session:
        session.execute(update(Delivery).values(next_attempt_at=utcnow() - timedelta(seconds=1)))


def results(sessions: sessionmaker[Session]) -> dict[str, str]:
    """The job's DICOM results: modality (SEG, SR) by SOP Instance UID."""
    with sessions() as session:
        rows = session.execute(select(Result.sop_instance_uid, Result.kind)).all()
    return {uid: kind.upper() for uid, kind in rows if uid is not None}


def stored_in(orthanc: Orthanc) -> dict[str, str]:
    """Modality of every instance Orthanc holds, by SOP Instance UID (read over REST)."""
    answer = httpx.get(
        orthanc.url("/instances?expand"), auth=(USER, PASSWORD), trust_env=False, timeout=30
    )
    answer.raise_for_status()
    series = httpx.get(
        orthanc.url("/series?expand"), auth=(USER, PASSWORD), trust_env=False, timeout=30
    ).json()
    modality = {s["ID"]: s["MainDicomTags"].get("Modality", "") for s in series}
    return {
        i["MainDicomTags"]["SOPInstanceUID"]: modality[i["ParentSeries"]] for i in answer.json()
    }


def restart(orthanc: Orthanc) -> None:
    """Start a stopped Orthanc again: same configuration, ports, folder and stored objects."""
    with orthanc.log.open("ab") as out:
        orthanc.process = subprocess.Popen(
            [str(ORTHANC), str(orthanc.workdir / "orthanc.json")],
            stdout=out,
            stderr=out,
            cwd=orthanc.workdir,
        )
    wait_for_listener(orthanc.process, orthanc.http_port, timeout=60)


def assert_no_secret_in(logs: pytest.LogCaptureFixture, *shown: str) -> None:
    for text in (logs.text, *shown):
        for secret in SECRETS:
            assert secret not in text


def test_seg_and_sr_are_stored_by_stow_rs_and_read_back(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    phantom_study: WrittenStudy,  # noqa: F811
    orthanc: Orthanc,
    logs: pytest.LogCaptureFixture,
) -> None:
    settings = node_settings(tmp_path, orthanc)
    job_id = analysed_job(sessions, settings, phantom_study)
    logs.clear()
    assert deliver(sessions, settings, job_id) is JobState.DONE
    assert deliveries(sessions) == [(NAME, "sent", 1, "HTTP 200", None)] * 2
    sent = results(sessions)
    assert sorted(sent.values()) == ["SEG", "SR"]
    assert stored_in(orthanc) == sent
    assert "HTTP Request: POST" in logs.text  # httpx's own records were captured
    assert_no_secret_in(logs, repr(settings), str(settings.registry.named(NAME)))
    for uid in (*sent, phantom_study.study_instance_uid):
        assert uid not in logs.text


def test_a_pacs_that_is_down_is_retried_after_the_backoff(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    phantom_study: WrittenStudy,  # noqa: F811
    orthanc: Orthanc,
    logs: pytest.LogCaptureFixture,
) -> None:
    settings = node_settings(tmp_path, orthanc)
    job_id = analysed_job(sessions, settings, phantom_study)
    orthanc.stop()
    assert deliver(sessions, settings, job_id) is JobState.DELIVERING
    refused = "cannot connect: [Errno 111] Connection refused"
    assert deliveries(sessions) == [(NAME, "pending", 1, None, refused)] * 2
    assert all(timedelta(minutes=55) < due for due in retry_due_in(sessions))
    assert deliver(sessions, settings, job_id) is JobState.DELIVERING  # not due: not sent
    assert [row[2] for row in deliveries(sessions)] == [1, 1]
    restart(orthanc)
    make_due(sessions)
    assert deliver(sessions, settings, job_id) is JobState.DONE
    assert deliveries(sessions) == [(NAME, "sent", 2, "HTTP 200", None)] * 2
    assert stored_in(orthanc) == results(sessions)
    assert_no_secret_in(logs)


def test_a_wrong_password_is_retried_dead_lettered_and_replayed(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    phantom_study: WrittenStudy,  # noqa: F811
    orthanc: Orthanc,
    logs: pytest.LogCaptureFixture,
) -> None:
    wrong = node_settings(tmp_path, orthanc, WRONG_PASSWORD, delivery_max_attempts=2)
    job_id = analysed_job(sessions, wrong, phantom_study)
    assert deliver(sessions, wrong, job_id) is JobState.DELIVERING
    assert deliveries(sessions) == [(NAME, "pending", 1, "HTTP 401", REFUSED)] * 2
    assert all(timedelta(minutes=55) < due for due in retry_due_in(sessions))
    make_due(sessions)
    assert deliver(sessions, wrong, job_id) is JobState.FAILED
    assert deliveries(sessions) == [(NAME, "dead", 2, "HTTP 401", REFUSED)] * 2
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.retryable
        assert job.reason == "dicom delivery failed after 2 attempts; replay to retry"
    assert stored_in(orthanc) == {}
    # The site corrects the password; an admin replays the deliveries to the destination.
    fixed = node_settings(tmp_path, orthanc, delivery_max_attempts=2)
    with sessions.begin() as session:
        assert replay_deliveries(session, job_id, NAME, actor="admin", remote_address=None) == 2
    assert deliver(sessions, fixed, job_id) is JobState.DONE
    assert deliveries(sessions) == [(NAME, "sent", 1, "HTTP 200", None)] * 2
    assert stored_in(orthanc) == results(sessions)
    assert_no_secret_in(logs, repr(wrong), repr(fixed))
