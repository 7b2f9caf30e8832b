from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.assembly import StudyAssembler
from pacs_node.db.jobs import transition
from pacs_node.db.ledger import InstanceLedger, InstanceRecord, RecordOutcome
from pacs_node.db.tables import Instance, Job, JobEvent, ReceiveError, Series, Study
from pacs_node.domain import CompletionTrigger, JobState, StudyStatus
from pacs_node.errors import ConflictingInstanceError, StudyIncompleteError
from pacs_node.selection import load_rules, series_attributes
from tests.helpers.dicom_factory import StudySpec, make_study


class RecordingQueue:
    """Test double for the broker hand-off (the database is real)."""

    def __init__(self) -> None:
        self.job_ids: list[int] = []

    def enqueue(self, job_id: int) -> None:
        self.job_ids.append(job_id)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def records(spec: StudySpec) -> list[InstanceRecord]:
    return [
        InstanceRecord(
            study_instance_uid=ds.StudyInstanceUID,
            series_instance_uid=ds.SeriesInstanceUID,
            sop_instance_uid=ds.SOPInstanceUID,
            sop_class_uid=ds.SOPClassUID,
            transfer_syntax_uid=ds.file_meta.TransferSyntaxUID,
            relative_path=f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm",
            size_bytes=100,
            patient_id=ds.PatientID,
            accession_number=ds.AccessionNumber,
            calling_ae="PACS",
            series_attributes=series_attributes(ds),
        )
        for ds in make_study(spec)
    ]


def make_assembler(
    sessions: sessionmaker[Session], queue: RecordingQueue, clock: Clock
) -> StudyAssembler:
    return StudyAssembler(
        sessions, load_rules(), queue, quiet_seconds=30, release_grace_seconds=2, clock=clock
    )


def test_repeat_is_not_a_duplicate_and_conflict_is_refused(
    sessions: sessionmaker[Session],
) -> None:
    ledger = InstanceLedger(sessions)
    first = records(StudySpec(seed=1))[0]
    assert ledger.record_instance(first) is RecordOutcome.NEW
    assert ledger.record_instance(first) is RecordOutcome.REPEATED
    other_study = records(StudySpec(seed=2))[0]
    conflicting = InstanceRecord(
        **{
            **first.__dict__,
            "study_instance_uid": other_study.study_instance_uid,
            "series_instance_uid": other_study.series_instance_uid,
        }
    )
    with pytest.raises(ConflictingInstanceError):
        ledger.record_instance(conflicting)
    # Same SOP Instance UID, same study, another series: also a conflict.
    other_series = InstanceRecord(**{**first.__dict__, "series_instance_uid": "1.2.3.4.5"})
    with pytest.raises(ConflictingInstanceError):
        ledger.record_instance(other_series)
    with sessions() as s:
        assert s.scalar(select(Instance.times_received)) == 2
        assert len(s.scalars(select(Instance)).all()) == 1
        assert len(s.scalars(select(Study)).all()) == 1  # the conflicting study rolled back
        assert len(s.scalars(select(Series)).all()) == 1


def test_quiet_period_completes_and_enqueues_after_commit(
    sessions: sessionmaker[Session],
) -> None:
    ledger, queue, clock = InstanceLedger(sessions), RecordingQueue(), Clock()
    assembler = make_assembler(sessions, queue, clock)
    for r in records(StudySpec(seed=3)):
        ledger.record_instance(r)
    with sessions.begin() as s:  # pretend the last instance arrived at the clock's time
        s.execute(Study.__table__.update().values(last_received_at=clock.now))
    clock.now += timedelta(seconds=29)
    assert assembler.tick() == []
    clock.now += timedelta(seconds=2)
    [done] = assembler.tick()
    assert done.trigger is CompletionTrigger.QUIET_PERIOD and done.skip_reason is None
    assert queue.job_ids == [done.job_id]
    with sessions() as s:
        job = s.get(Job, done.job_id)
        assert job is not None and job.state == JobState.QUEUED and job.version == 1
        assert s.scalar(select(Study.status)) == StudyStatus.COMPLETE
        roles = dict(s.execute(select(Series.series_description, Series.role)).all())
        assert roles == {"T1 TSE SAG": "SAG_T1", "T2 TSE SAG": "SAG_T2"}
        assert job.events[0].message.startswith("job created: queued")
    assert assembler.tick() == []  # completed once


def test_release_with_protocol_completes_early_but_not_without_sag_t2(
    sessions: sessionmaker[Session],
) -> None:
    ledger, queue, clock = InstanceLedger(sessions), RecordingQueue(), Clock()
    assembler = make_assembler(sessions, queue, clock)
    with_t2 = StudySpec(seed=4)
    axial_only = StudySpec(seed=5, series=("T2 TSE AX",))
    for r in records(with_t2) + records(axial_only):
        ledger.record_instance(r)
    clock.now = datetime.now(UTC) + timedelta(seconds=1)
    ledger.mark_released([with_t2.study_uid, axial_only.study_uid], at=clock.now)
    clock.now += timedelta(seconds=3)
    done = assembler.tick()
    assert [d.study_instance_uid for d in done] == [with_t2.study_uid]
    assert done[0].trigger is CompletionTrigger.RELEASED_WITH_PROTOCOL
    # The axial-only study waits for its quiet period; its job is to report why it is skipped.
    clock.now += timedelta(seconds=30)
    [skipped] = assembler.tick()
    assert skipped.skip_reason == "no usable series: missing SAG_T2"
    assert queue.job_ids == [done[0].job_id, skipped.job_id]


def test_non_lumbar_study_gets_a_queued_job_that_keeps_the_reason(
    sessions: sessionmaker[Session],
) -> None:
    ledger, queue, clock = InstanceLedger(sessions), RecordingQueue(), Clock()
    assembler = make_assembler(sessions, queue, clock)
    spec = StudySpec(seed=6, modality="CT")
    for r in records(spec):
        ledger.record_instance(r)
    assembler.force_complete(spec.study_uid)
    [done] = assembler.tick()
    assert done.trigger is CompletionTrigger.FORCED
    assert done.skip_reason == "modality CT is not MR"
    assert queue.job_ids == [done.job_id]  # the worker sends the not-analysed report
    with sessions() as s:
        job = s.get(Job, done.job_id)
        assert job is not None and job.state == JobState.QUEUED
        assert (job.skip_reason, job.reason) == ("modality CT is not MR", None)
        assert job.events[0].message == "job created: queued (not analysed: modality CT is not MR)"


def test_force_complete_unknown_study(sessions: sessionmaker[Session]) -> None:
    assembler = make_assembler(sessions, RecordingQueue(), Clock())
    with pytest.raises(StudyIncompleteError):
        assembler.force_complete("1.2.3.4")


def test_late_series_opens_a_new_version_that_supersedes(
    sessions: sessionmaker[Session],
) -> None:
    ledger, queue, clock = InstanceLedger(sessions), RecordingQueue(), Clock()
    assembler = make_assembler(sessions, queue, clock)
    spec = StudySpec(seed=7, series=("T2 TSE SAG",))
    for r in records(spec):
        ledger.record_instance(r)
    assembler.force_complete(spec.study_uid)
    [first] = assembler.tick()
    # A resend of the same instances changes nothing.
    for r in records(spec):
        assert ledger.record_instance(r) is RecordOutcome.REPEATED
    with sessions() as s:
        assert s.scalar(select(Study.status)) == StudyStatus.COMPLETE
    late = StudySpec(seed=7, series=("T1 TSE SAG",), study_uid=spec.study_uid)
    for r in records(late):
        assert ledger.record_instance(r) is RecordOutcome.NEW
    assembler.force_complete(spec.study_uid)
    [second] = assembler.tick()
    with sessions() as s:
        old, new = s.get(Job, first.job_id), s.get(Job, second.job_id)
        assert old is not None and new is not None
        assert old.state == JobState.SUPERSEDED
        assert (new.version, new.supersedes_job_id) == (2, old.id)
        assert any("superseded by job" in e.message for e in old.events)
    assert queue.job_ids == [first.job_id, second.job_id]


def test_instance_arriving_during_completion_keeps_study_open(
    sessions: sessionmaker[Session],
) -> None:
    """The completion is compare-and-set on last_received_at."""
    ledger, queue, clock = InstanceLedger(sessions), RecordingQueue(), Clock()
    assembler = make_assembler(sessions, queue, clock)
    rs = records(StudySpec(seed=8))
    ledger.record_instance(rs[0])
    with sessions() as s:
        study = s.scalars(select(Study)).one()
        seen = study.last_received_at
        study_id = study.id
    ledger.record_instance(rs[1])  # arrives after the assembler read the study
    assert assembler._complete(study_id, seen, CompletionTrigger.FORCED, clock.now) is None
    with sessions() as s:
        assert s.scalar(select(Study.status)) == StudyStatus.RECEIVING
        assert s.scalars(select(Job)).all() == []


def test_transition_is_compare_and_set(sessions: sessionmaker[Session]) -> None:
    ledger, queue, clock = InstanceLedger(sessions), RecordingQueue(), Clock()
    assembler = make_assembler(sessions, queue, clock)
    spec = StudySpec(seed=9)
    for r in records(spec):
        ledger.record_instance(r)
    assembler.force_complete(spec.study_uid)
    [done] = assembler.tick()
    with sessions.begin() as s:
        assert transition(s, done.job_id, JobState.QUEUED, JobState.RUNNING, "taken")
    with sessions.begin() as s:
        assert not transition(s, done.job_id, JobState.QUEUED, JobState.RUNNING, "again")
    with sessions() as s:
        events = s.scalars(select(JobEvent).where(JobEvent.job_id == done.job_id)).all()
        assert [e.state for e in events] == ["queued", "running"]


def test_rejections_are_recorded(sessions: sessionmaker[Session]) -> None:
    ledger = InstanceLedger(sessions)
    ledger.record_rejection(
        status=0xC000,
        reason="bad",
        calling_ae="X" * 40,
        peer_address="1.2.3.4:5",
        sop_instance_uid="../../x" * 20,
    )
    with sessions() as s:
        row = s.scalars(select(ReceiveError)).one()
        assert row.status == 0xC000 and row.calling_ae == "X" * 16
        assert row.sop_instance_uid is not None and len(row.sop_instance_uid) == 80
