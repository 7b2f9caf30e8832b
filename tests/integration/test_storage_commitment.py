"""Storage commitment against a real PACS: Debian's Orthanc as Storage Commitment SCP.

The node's SCP runs in process (as ``serve`` starts it, with the journal that settles deliveries
and wakes their jobs) and a real delivery stage sends a job's SEG and SR to Orthanc, flagged
``/commit``. Orthanc answers the N-ACTION, then opens a new association to the node (the
modality whose AE title is the node's) and sends its N-EVENT-REPORT. The test drives the worker
side by hand: it runs the deliveries the queue was asked for and ticks the reconciler.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import pacs_node.dispatch.dicom
from pacs_node.config import Settings
from pacs_node.db import migrate
from pacs_node.db.jobs import job_state
from pacs_node.db.ledger import InstanceLedger
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.db.tables import Delivery, Job, JobEvent
from pacs_node.destinations import Destination
from pacs_node.dispatch.commitment import CommitmentLedger
from pacs_node.domain import JobState
from pacs_node.policy import JobPolicy
from pacs_node.reconciler import Reconciler
from pacs_node.scp.server import RunningSCP, start_scp
from pacs_node.spool import Spool
from tests.helpers.orthanc import ORTHANC, Orthanc, run_orthanc, wait_until
from tests.helpers.services import free_port
from tests.unit.worker.conftest import (
    FakePredictor,
    RecordingQueue,
    phantom_study,  # noqa: F401  (fixture)
)
from tests.unit.worker.test_runner import received_study
from worker.phantom import WrittenStudy
from worker.runner import JobRunner

pytestmark = [pytest.mark.integration, pytest.mark.slow]

if not ORTHANC.exists():
    pytest.skip("Orthanc is needed", allow_module_level=True)

NODE_AE = "LUMBAR_NODE"
DEADLINE = 120
"""Seconds to wait for any one condition (Orthanc's jobs, retries, timeouts)."""
POLICY = JobPolicy(
    delivery_max_attempts=2,
    delivery_backoff_seconds=0.5,
    requeue_after_seconds=0.5,
    commitment_timeout_seconds=3,
)


@dataclass
class Node:
    """The node's SCP, worker side and reconciler on one SQLite database."""

    sessions: sessionmaker[Session]
    runner: JobRunner
    queue: RecordingQueue
    reconciler: Reconciler

    def pump(self) -> None:
        """What ``serve`` and a worker would do now: a reconciler tick, then each delivery the
        queue was asked for."""
        self.reconciler.tick()
        while self.queue.deliver:
            self.runner.deliver(self.queue.deliver.pop(0))

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        """Pump until ``condition`` holds."""

        def pumped() -> bool:
            self.pump()
            return condition()

        wait_until(pumped, DEADLINE, what)

    def job_state(self, job_id: int) -> JobState | None:
        with self.sessions() as session:
            return job_state(session, job_id)

    def deliveries(self) -> list[tuple[str, int, str | None]]:
        """State, attempts and last error of each delivery."""
        with self.sessions() as session:
            rows = session.execute(
                select(Delivery.state, Delivery.attempts, Delivery.last_error).order_by(Delivery.id)
            ).all()
        return [(r.state, r.attempts, r.last_error) for r in rows]

    def timeline(self, job_id: int) -> list[str]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(JobEvent.message).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
                )
            )


@pytest.fixture
def node_port() -> int:
    return free_port()


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def scp(
    tmp_path: Path, sessions: sessionmaker[Session], node_port: int
) -> Iterator[tuple[RunningSCP, RecordingQueue]]:
    """The node's SCP, its commitment reports waking jobs on a recording queue."""
    settings = Settings(spool_dir=tmp_path / "spool", port=node_port, policy=POLICY)
    queue = RecordingQueue()
    running = start_scp(
        settings,
        Spool(settings.spool_dir),
        InstanceLedger(sessions),
        CommitmentLedger(sessions, POLICY, queue.enqueue_delivery),
    )
    yield running, queue
    running.stop()


def make_node(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    queue: RecordingQueue,
    orthanc: Orthanc,
) -> Node:
    settings = Settings(
        ae_title=NODE_AE,
        spool_dir=tmp_path / "spool",
        destinations=(
            Destination.parse_dicom(f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}/commit"),
        ),
        dimse_timeout=30,
        policy=POLICY,
    )
    runner = JobRunner(
        settings=settings,
        sessions=sessions,
        spool=Spool(settings.spool_dir),
        queue=queue,
        predictor_factory=FakePredictor,
    )
    return Node(sessions, runner, queue, Reconciler(sessions, queue, POLICY))


def analysed_job(node: Node, study: WrittenStudy) -> int:
    """A job with its SEG and SR stored, its delivery enqueued."""
    job_id = received_study(node.sessions, node.runner.spool, study)
    assert node.runner.analyse(job_id)
    return job_id


def test_results_count_as_delivered_once_orthanc_commits_them(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    scp: tuple[RunningSCP, RecordingQueue],
    node_port: int,
    phantom_study: WrittenStudy,  # noqa: F811
) -> None:
    _, woken = scp
    modalities = {"node": (NODE_AE, "127.0.0.1", node_port)}
    with run_orthanc(tmp_path / "orthanc", modalities=modalities) as orthanc:
        node = make_node(tmp_path, sessions, woken, orthanc)
        job_id = analysed_job(node, phantom_study)
        node.wait_for(
            lambda: node.job_state(job_id) is JobState.DONE,
            f"job done after Orthanc's commitment\n{orthanc.log_tail()}",
        )
        assert orthanc.series_modalities() == ["SEG", "SR"]
    assert node.deliveries() == [("sent", 1, None), ("sent", 1, None)]
    timeline = node.timeline(job_id)
    requested = timeline.index("storage commitment requested from ORTHANC: 2 objects")
    committed = timeline.index("storage commitment from ORTHANC: 2 objects committed")
    assert requested < committed < timeline.index("deliver complete")
    with sessions() as session:
        assert all(d.delivered_at is not None for d in session.scalars(select(Delivery)))


def test_a_commitment_never_reported_is_retried_then_dead_lettered(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    scp: tuple[RunningSCP, RecordingQueue],
    phantom_study: WrittenStudy,  # noqa: F811
) -> None:
    _, woken = scp
    # Orthanc knows the node's AE title but at a port nobody listens on: its reports get nowhere.
    modalities = {"node": (NODE_AE, "127.0.0.1", free_port())}
    with run_orthanc(tmp_path / "orthanc", modalities=modalities) as orthanc:
        node = make_node(tmp_path, sessions, woken, orthanc)
        job_id = analysed_job(node, phantom_study)
        node.pump()
        assert {state for state, _, _ in node.deliveries()} == {"committing"}
        assert node.job_state(job_id) is JobState.DELIVERING
        node.wait_for(
            lambda: node.job_state(job_id) is JobState.FAILED,
            f"job failed after two unreported commitments\n{orthanc.log_tail()}",
        )
    no_report = "no storage commitment within 3 s"
    assert node.deliveries() == [("dead", 2, no_report), ("dead", 2, no_report)]
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.retryable
    timeline = node.timeline(job_id)
    assert timeline.count("storage commitment requested from ORTHANC: 2 objects") == 2
    assert timeline.count(f"{no_report} (ORTHANC, 2 objects)") == 2
    assert timeline[-1] == "dicom delivery dead-lettered"


def test_objects_orthanc_does_not_hold_fail_their_commitment_and_are_sent_again(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    scp: tuple[RunningSCP, RecordingQueue],
    node_port: int,
    phantom_study: WrittenStudy,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, woken = scp
    modalities = {"node": (NODE_AE, "127.0.0.1", node_port)}
    with run_orthanc(tmp_path / "orthanc", modalities=modalities) as orthanc:
        node = make_node(tmp_path, sessions, woken, orthanc)
        request = pacs_node.dispatch.dicom.request_commitment
        attempts: list[int] = []

        def delete_first_then_request(*args: object, **kwargs: object) -> object:
            """On the first attempt, Orthanc loses the objects between C-STORE and N-ACTION."""
            if not attempts:
                for instance in orthanc.get_json("/instances"):
                    delete(orthanc, f"/instances/{instance}")
            attempts.append(1)
            return request(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(
            pacs_node.dispatch.dicom, "request_commitment", delete_first_then_request
        )
        job_id = analysed_job(node, phantom_study)
        node.wait_for(
            lambda: node.job_state(job_id) is JobState.DONE,
            f"job done after a failed and a successful commitment\n{orthanc.log_tail()}",
        )
    assert len(attempts) == 2
    assert node.deliveries() == [("sent", 2, None), ("sent", 2, None)]
    timeline = node.timeline(job_id)
    failed = timeline.index("storage commitment failed: 0x0112 (ORTHANC, 2 objects)")
    assert failed < timeline.index("storage commitment from ORTHANC: 2 objects committed")


def delete(orthanc: Orthanc, path: str) -> None:
    """DELETE a REST resource of Orthanc."""
    # The URL is always http://127.0.0.1 (Orthanc.url), so no other scheme can be opened.
    request = urllib.request.Request(orthanc.url(path), method="DELETE")  # noqa: S310
    urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30).close()
