"""Job steps end to end without Celery: analyse, store, deliver, notify, retry, dead-letter; a
study out of intended use sends its not-analysed SR the same way and ends skipped."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.config import Settings
from pacs_node.db import migrate, queries
from pacs_node.db.admin_actions import replay_deliveries
from pacs_node.db.jobs import create_job
from pacs_node.db.node_identity import read_node_identity
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.db.tables import Delivery, Instance, Job, JobEvent, Result, Series, Study
from pacs_node.destinations import Destination
from pacs_node.domain import JobState, StudyStatus
from pacs_node.hl7.receiver import MllpReceiver
from pacs_node.policy import JobPolicy
from pacs_node.results.identity import job_result_key
from pacs_node.results.inputs import ResultContext
from pacs_node.results.sr import sr_uids
from pacs_node.spool import Spool
from tests.unit.dispatch.conftest import StoreSCP, store_scp  # noqa: F401  (fixture)
from tests.unit.worker.conftest import (
    REVIEW,
    FakePredictor,
    RecordingQueue,
    assert_not_analysed_sr,
)
from worker.delivery import NOTHING_SENT
from worker.phantom import WrittenStudy
from worker.runner import JobRunner

POLICY = JobPolicy(max_attempts=2, delivery_max_attempts=2, delivery_backoff_seconds=0.001)
SKIP_REASON = "no usable series: missing SAG_T2"


@pytest.fixture
def ris() -> Iterator[MllpReceiver]:
    receiver = MllpReceiver(["AE"]).start()
    yield receiver
    receiver.stop()


def received_study(
    sessions: sessionmaker[Session],
    spool: Spool,
    study: WrittenStudy,
    skip_reason: str | None = None,
) -> int:
    """Spool a study and record it as the SCP and assembly would; returns the queued job."""
    with sessions.begin() as session:
        row = Study(study_instance_uid=study.study_instance_uid, status=StudyStatus.COMPLETE)
        session.add(row)
        session.flush()
        for series in study.series:
            series_row = Series(
                study_id=row.id, series_instance_uid=series.series_instance_uid, role=series.role
            )
            session.add(series_row)
            session.flush()
            for path in series.paths:
                ds = pydicom.dcmread(path)
                stored = spool.write_instance(
                    study.study_instance_uid,
                    series.series_instance_uid,
                    ds.SOPInstanceUID,
                    Path(path).read_bytes(),
                )
                session.add(
                    Instance(
                        series_id=series_row.id,
                        sop_instance_uid=ds.SOPInstanceUID,
                        sop_class_uid=ds.SOPClassUID,
                        transfer_syntax_uid=ds.file_meta.TransferSyntaxUID,
                        path=stored.relative_path,
                        size_bytes=stored.size_bytes,
                    )
                )
        return create_job(
            session,
            study_id=row.id,
            state=JobState.QUEUED,
            trigger="forced",
            skip_reason=skip_reason,
        ).id


def make_runner(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    pacs_port: int,
    ris_port: int,
    predictor: FakePredictor,
) -> tuple[JobRunner, RecordingQueue]:
    settings = Settings(
        spool_dir=tmp_path / "spool",
        destinations=(Destination.dicom("PACS", "127.0.0.1", pacs_port),),
        hl7_endpoint=Destination.hl7("127.0.0.1", ris_port),
        dimse_timeout=5,
        policy=POLICY,
    )
    queue = RecordingQueue()
    runner = JobRunner(
        settings=settings,
        sessions=sessions,
        spool=Spool(settings.spool_dir),
        queue=queue,
        predictor_factory=lambda: predictor,
    )
    return runner, queue


def test_job_runs_to_done_and_retries_send_the_same_objects(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    phantom_study: WrittenStudy,
    store_scp: StoreSCP,  # noqa: F811
    ris: MllpReceiver,
) -> None:
    predictor = FakePredictor()
    runner, queue = make_runner(sessions, tmp_path, store_scp.port, ris.port, predictor)
    job_id = received_study(sessions, runner.spool, phantom_study)
    assert runner.analyse(job_id)
    assert not runner.analyse(job_id)  # a duplicate message does nothing
    assert len(predictor.calls) == 1 and queue.deliver == [job_id]
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.state == "results_ready"
        assert (job.model_name, job.checkpoint_sha256) == ("fake-model", "0" * 64)
        assert (job.needs_review, job.review_reasons) == (False, None)
        results = session.scalars(select(Result).order_by(Result.id)).all()
        assert [r.kind for r in results] == ["seg", "sr", "oru"]
        assert session.query(Delivery).count() == 3
    # The PACS refuses once: the delivery stays pending with a retry due; the RIS says AE.
    store_scp.refuse = True
    assert runner.deliver(job_id) is JobState.DELIVERING
    store_scp.refuse = False
    assert runner.deliver(job_id) is JobState.NOTIFYING  # HL7 got AE: retry pending
    assert runner.deliver(job_id) is JobState.DONE
    sent_uids = [r.sop_instance_uid for r in results if r.kind != "oru"]
    assert store_scp.received == sent_uids
    control_id = results[2].control_id
    assert ris.control_ids() == [control_id, control_id]
    with sessions() as session:
        rows = session.execute(
            select(Delivery.channel, Delivery.state, Delivery.attempts).order_by(Delivery.id)
        ).all()
        assert [tuple(r) for r in rows] == [
            ("dicom", "sent", 2),
            ("dicom", "sent", 2),
            ("hl7", "sent", 2),
        ]
        events = session.scalars(
            select(JobEvent.state).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        ).all()
        assert events[-3:] == ["delivering", "notifying", "done"]


def test_results_carry_the_site_identity(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    phantom_study: WrittenStudy,
    store_scp: StoreSCP,  # noqa: F811
    ris: MllpReceiver,
) -> None:
    runner, _ = make_runner(sessions, tmp_path, store_scp.port, ris.port, FakePredictor())
    runner.settings = runner.settings.replace(
        uid_root="1.2.826.0.1.99.",
        institution_name="General Hospital",
        hl7_receiving_application="RIS",
        hl7_receiving_facility="GENERAL",
        hl7_processing_id="T",
    )
    job_id = received_study(sessions, runner.spool, phantom_study)
    assert runner.analyse(job_id)
    with sessions() as session:
        results = session.scalars(select(Result).order_by(Result.id)).all()
    for result in results[:2]:  # SEG and SR
        stored = pydicom.dcmread(runner.spool.path_of(result.path))
        assert stored.SOPInstanceUID.startswith("1.2.826.0.1.99.")
        assert stored.SeriesInstanceUID.startswith("1.2.826.0.1.99.")
        assert stored.InstitutionName == "General Hospital"
    msh = runner.spool.path_of(results[2].path).read_bytes().split(b"\r")[0].split(b"|")
    assert (msh[2], msh[4], msh[5], msh[10]) == (b"PACS_NODE", b"RIS", b"GENERAL", b"T")


def test_dead_lettered_delivery_fails_the_job_retryably(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    phantom_study: WrittenStudy,
    store_scp: StoreSCP,  # noqa: F811
    ris: MllpReceiver,
) -> None:
    runner, _ = make_runner(sessions, tmp_path, store_scp.port, ris.port, FakePredictor())
    job_id = received_study(sessions, runner.spool, phantom_study)
    assert runner.analyse(job_id)
    store_scp.refuse = True
    runner.deliver(job_id)
    assert runner.deliver(job_id) is JobState.FAILED
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.retryable and "replay" in (job.reason or "")
        states = session.scalars(select(Delivery.state).where(Delivery.channel == "dicom")).all()
        assert set(states) == {"dead"}
        # An admin replay makes them pending again; the runner picks the job up.
        for delivery in session.scalars(select(Delivery).where(Delivery.state == "dead")).all():
            delivery.state, delivery.attempts, delivery.next_attempt_at = "pending", 0, None
        session.commit()
    store_scp.refuse = False
    assert runner.deliver(job_id) is JobState.NOTIFYING  # stored; the RIS answers AE first
    assert runner.deliver(job_id) is JobState.DONE
    assert len(store_scp.received) == 2


def test_crashing_model_is_retried_then_failed(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    phantom_study: WrittenStudy,
) -> None:
    predictor = FakePredictor(error=RuntimeError("model exploded"))
    runner, queue = make_runner(sessions, tmp_path, 1, 1, predictor)
    job_id = received_study(sessions, runner.spool, phantom_study)
    assert not runner.analyse(job_id)
    assert queue.analyse == [job_id]  # back in line for another attempt
    assert not runner.analyse(job_id)
    assert queue.analyse == [job_id]  # out of attempts: not enqueued again
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.state, job.attempts) == ("failed", 2)
        assert job.reason == "RuntimeError: model exploded"
        assert session.query(Result).count() == 0


def test_results_of_an_attempt_that_lost_its_lease_are_discarded(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    phantom_study: WrittenStudy,
) -> None:
    def taken_over() -> None:  # the lease expired and another worker took the job
        with sessions.begin() as session:
            session.execute(update(Job).values(lease_owner="another-worker"))

    runner, queue = make_runner(sessions, tmp_path, 1, 1, FakePredictor(during=taken_over))
    job_id = received_study(sessions, runner.spool, phantom_study)
    assert not runner.analyse(job_id)
    assert (queue.analyse, queue.deliver) == ([], [])
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and (job.state, job.lease_owner) == ("running", "another-worker")
        assert session.query(Result).count() == 0


def test_the_quality_check_is_recorded_on_the_job_with_the_model(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    phantom_study: WrittenStudy,
    store_scp: StoreSCP,  # noqa: F811
    ris: MllpReceiver,
) -> None:
    predictor = FakePredictor(quality=REVIEW)
    runner, _ = make_runner(sessions, tmp_path, store_scp.port, ris.port, predictor)
    job_id = received_study(sessions, runner.spool, phantom_study)
    assert runner.analyse(job_id)
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and (job.state, job.model_name) == ("results_ready", "fake-model")
        assert job.needs_review is True
        assert job.review_reasons == "only 3 of 5 lumbar discs found\nsacrum not in view"
        detail = queries.job_detail(session, job_id)
    assert detail is not None
    assert detail.job.review_reasons == REVIEW.reasons
    assert detail.events[-1].message == "results stored: seg, sr, oru; low confidence: review"


def model_must_not_load() -> FakePredictor:
    raise AssertionError("the model was loaded for a study it does not analyse")


def test_skipped_study_sends_its_not_analysed_sr_once_and_ends_skipped(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    phantom_study: WrittenStudy,
    store_scp: StoreSCP,  # noqa: F811
    ris: MllpReceiver,
) -> None:
    runner, queue = make_runner(sessions, tmp_path, store_scp.port, ris.port, FakePredictor())
    runner.predictor_factory = model_must_not_load
    job_id = received_study(sessions, runner.spool, phantom_study, SKIP_REASON)
    assert runner.analyse(job_id)
    assert not runner.analyse(job_id)  # a duplicate message does nothing
    assert queue.deliver == [job_id]
    assert runner.deliver(job_id) is JobState.SKIPPED
    assert runner.deliver(job_id) is JobState.SKIPPED  # nothing is due: nothing is sent again
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.state, job.reason, job.model_name) == ("skipped", SKIP_REASON, None)
        assert (job.needs_review, job.review_reasons) == (None, None)  # no model ran
        (result,) = session.scalars(select(Result)).all()
        deliveries = session.execute(select(Delivery.channel, Delivery.state)).all()
        events = session.scalars(
            select(JobEvent.state).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        ).all()
    # The SR's identity is derived from the job; by default the RIS gets no ORU for a study not
    # analysed.
    with sessions() as session:
        key = job_result_key(
            read_node_identity(session).node_id, phantom_study.study_instance_uid, 1
        )
    context = ResultContext(job_key=key, created=datetime.now(UTC), software_version="")
    assert (result.kind, result.series_instance_uid, result.sop_instance_uid) == (
        "sr",
        *sr_uids(context),
    )
    assert [tuple(d) for d in deliveries] == [("dicom", "sent")]
    assert store_scp.received == [result.sop_instance_uid] and ris.control_ids() == []
    assert events == ["queued", "running", "results_ready", "delivering", "notifying", "skipped"]
    first_instance = pydicom.dcmread(phantom_study.series[0].paths[0], stop_before_pixels=True)
    sr_file = runner.spool.path_of(result.path).read_bytes()
    assert_not_analysed_sr(sr_file, first_instance, SKIP_REASON)
    # An admin replay sends the same stored object again: no new result or delivery rows.
    with sessions.begin() as session:
        replay_deliveries(session, job_id, "PACS", actor="admin", remote_address=None)
    assert runner.deliver(job_id) is JobState.SKIPPED
    assert store_scp.received == [result.sop_instance_uid] * 2
    with sessions() as session:
        assert (session.query(Result).count(), session.query(Delivery).count()) == (1, 1)
        assert session.scalar(select(Job.reason).where(Job.id == job_id)) == SKIP_REASON


def test_skipped_study_notifies_the_ris_when_the_site_asks(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    phantom_study: WrittenStudy,
    store_scp: StoreSCP,  # noqa: F811
    ris: MllpReceiver,
) -> None:
    runner, _ = make_runner(sessions, tmp_path, store_scp.port, ris.port, FakePredictor())
    runner.settings = runner.settings.replace(hl7_not_analysed=True)
    runner.predictor_factory = model_must_not_load
    job_id = received_study(sessions, runner.spool, phantom_study, SKIP_REASON)
    assert runner.analyse(job_id)
    assert runner.deliver(job_id) is JobState.NOTIFYING  # the RIS answers AE first: retry due
    assert runner.deliver(job_id) is JobState.SKIPPED
    with sessions() as session:
        results = session.execute(select(Result.kind, Result.control_id)).all()
        deliveries = session.execute(select(Delivery.channel, Delivery.state)).all()
    assert sorted(kind for kind, _ in results) == ["oru", "sr"]
    assert sorted(tuple(d) for d in deliveries) == [("dicom", "sent"), ("hl7", "sent")]
    (control_id,) = [c for kind, c in results if kind == "oru"]
    assert ris.control_ids() == [control_id, control_id]  # the retry resends the same message
    assert ris.received[0] == ris.received[1]
    message = ris.received[0].decode()
    assert "Not analysed" in message and SKIP_REASON in message


def test_skipped_study_whose_pacs_refuses_is_retried_then_dead_lettered(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    phantom_study: WrittenStudy,
    store_scp: StoreSCP,  # noqa: F811
    ris: MllpReceiver,
) -> None:
    runner, _ = make_runner(sessions, tmp_path, store_scp.port, ris.port, FakePredictor())
    job_id = received_study(sessions, runner.spool, phantom_study, SKIP_REASON)
    assert runner.analyse(job_id)
    store_scp.refuse = True
    assert runner.deliver(job_id) is JobState.DELIVERING  # a retry is due after the backoff
    assert runner.deliver(job_id) is JobState.FAILED
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.retryable
        assert job.reason == "dicom delivery failed after 2 attempts; replay to retry"
        assert session.execute(select(Delivery.state, Delivery.attempts)).one() == ("dead", 2)
    store_scp.refuse = False
    with sessions.begin() as session:
        replay_deliveries(session, job_id, "PACS", actor="admin", remote_address=None)
    assert runner.deliver(job_id) is JobState.SKIPPED
    assert len(store_scp.received) == 1
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and (job.reason, job.retryable) == (SKIP_REASON, False)


def test_job_without_destinations_ends_done_saying_nothing_was_sent(
    sessions: sessionmaker[Session], tmp_path: Path, phantom_study: WrittenStudy
) -> None:
    runner, _ = make_runner(sessions, tmp_path, 104, 2575, FakePredictor())
    runner.settings = runner.settings.replace(destinations=(), hl7_endpoint=None)
    job_id = received_study(sessions, runner.spool, phantom_study)
    assert runner.analyse(job_id)
    assert runner.deliver(job_id) is JobState.DONE
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.reason == NOTHING_SENT
        assert session.query(Delivery).count() == 0
        messages = session.scalars(
            select(JobEvent.message).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        ).all()
    assert messages[-2:] == [
        "deliver: no DICOM destination configured, nothing sent",
        "notify: no HL7 endpoint configured, no ORU sent",
    ]


def test_result_identities_differ_between_databases(
    tmp_path: Path, phantom_study: WrittenStudy
) -> None:
    """Two installations (fresh databases) analysing the same study share no SOP Instance UID,
    Series Instance UID or MSH-10 (job ids are both 1: identities no longer derive from them)."""

    def identities(name: str) -> set[str]:
        url = f"sqlite:///{tmp_path / name}.db"
        migrate.upgrade(url)
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        runner, _ = make_runner(sessions, tmp_path / name, 104, 2575, FakePredictor())
        job_id = received_study(sessions, runner.spool, phantom_study)
        assert job_id == 1 and runner.analyse(job_id)
        with sessions() as session:
            rows = session.scalars(select(Result)).all()
        engine.dispose()
        assert len(rows) == 3
        return {
            uid
            for r in rows
            for uid in (r.sop_instance_uid, r.series_instance_uid, r.control_id)
            if uid is not None
        }

    first, second = identities("a"), identities("b")
    assert len(first) == len(second) == 5
    assert not first & second
