"""Storing received instances: keep the first copy, never open a study for a derived object or
one of the node's own results; a SEG that corrects the node's SEG is the reference segmentation."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.uid import ComprehensiveSRStorage, SegmentationStorage
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.db.feedback import feedback_for_study
from pacs_node.db.jobs import create_job
from pacs_node.db.ledger import InstanceLedger, InstanceRecord
from pacs_node.db.tables import Instance, Result, Series, Study
from pacs_node.domain import InstanceOrigin, JobState, StudyStatus
from pacs_node.errors import ConflictingInstanceError
from pacs_node.instance_store import InstanceStore, StoreOutcome, StripeLocks
from pacs_node.origin import referenced_instances
from pacs_node.spool import Spool
from tests.unit.pacs_node.db.test_ledger_assembly import Clock, RecordingQueue, make_assembler

STUDY, SERIES, SOP = "1.2.3.4.5", "1.2.3.4.5.1", "1.2.3.4.5.1.1"


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


def record(
    spool: Spool,
    sop: str = SOP,
    series: str = SERIES,
    origin: InstanceOrigin = InstanceOrigin.SOURCE,
) -> InstanceRecord:
    return InstanceRecord(
        study_instance_uid=STUDY,
        series_instance_uid=series,
        sop_instance_uid=sop,
        sop_class_uid=SegmentationStorage if origin is not InstanceOrigin.SOURCE else "1.2.840.1",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        relative_path=spool.relative_path(STUDY, series, sop),
        size_bytes=0,
        calling_ae="PACS",
        origin=origin,
    )


def study_status(sessions: sessionmaker[Session]) -> str | None:
    with sessions() as session:
        return session.scalar(select(Study.status).where(Study.study_instance_uid == STUDY))


def test_the_first_copy_is_kept_and_a_different_one_only_counted(
    sessions: sessionmaker[Session], spool: Spool
) -> None:
    store = InstanceStore(spool, InstanceLedger(sessions))
    first = record(spool)
    assert store.store(first, b"first copy").outcome is StoreOutcome.STORED
    assert store.store(first, b"first copy").outcome is StoreOutcome.REPEATED
    assert store.store(first, b"other copy").outcome is StoreOutcome.DIFFERENT_COPY_IGNORED
    assert spool.path_of(first.relative_path).read_bytes() == b"first copy"
    with sessions() as session:
        (row,) = session.scalars(select(Instance)).all()
    assert (row.times_received, row.different_copies, row.size_bytes) == (2, 1, 10)


def test_a_held_uid_in_another_series_is_refused_without_writing(
    sessions: sessionmaker[Session], spool: Spool
) -> None:
    store = InstanceStore(spool, InstanceLedger(sessions))
    store.store(record(spool), b"first copy")
    elsewhere = record(spool, series="1.2.3.4.5.2")
    with pytest.raises(ConflictingInstanceError, match="another series"):
        store.store(elsewhere, b"first copy")
    assert not spool.path_of(elsewhere.relative_path).exists()


def test_a_row_without_a_hash_is_compared_by_its_file(
    sessions: sessionmaker[Session], spool: Spool
) -> None:
    store = InstanceStore(spool, InstanceLedger(sessions))
    store.store(record(spool), b"first copy")
    with sessions.begin() as session:  # as recorded before the hash was kept
        session.execute(update(Instance).values(sha256=None))
    assert store.store(record(spool), b"first copy").outcome is StoreOutcome.REPEATED
    assert store.store(record(spool), b"changed").outcome is StoreOutcome.DIFFERENT_COPY_IGNORED


def test_derived_objects_never_open_a_study(sessions: sessionmaker[Session], spool: Spool) -> None:
    store = InstanceStore(spool, InstanceLedger(sessions))
    derived = record(
        spool, sop="1.2.3.4.5.9.1", series="1.2.3.4.5.9", origin=InstanceOrigin.DERIVED
    )
    stored = store.store(derived, b"a SEG from a workstation")
    assert (stored.outcome, stored.origin) == (StoreOutcome.STORED, InstanceOrigin.DERIVED)
    assert study_status(sessions) == StudyStatus.DERIVED_ONLY
    clock = Clock()
    clock.now = datetime.now(UTC) + timedelta(hours=1)
    assembler = make_assembler(sessions, RecordingQueue(), clock)
    assert assembler.tick() == []
    # A source image opens the study; the derived series plays no part in its analysis.
    store.store(record(spool), b"an MR image")
    assert study_status(sessions) == StudyStatus.RECEIVING
    with sessions() as session:
        origins = dict(session.execute(select(Series.series_instance_uid, Series.origin)).all())
    assert origins == {"1.2.3.4.5.9": "derived", SERIES: "source"}


def test_own_results_sent_back_do_not_reopen_the_study(
    sessions: sessionmaker[Session], spool: Spool
) -> None:
    store = InstanceStore(spool, InstanceLedger(sessions))
    store.store(record(spool), b"an MR image")
    with sessions.begin() as session:
        study_id = session.scalar(select(Study.id))
        assert study_id is not None
        session.execute(update(Study).values(status=StudyStatus.COMPLETE.value))
        job = create_job(session, study_id=study_id, state=JobState.DONE, trigger="forced")
        session.add(
            Result(
                job_id=job.id,
                kind="seg",
                sop_instance_uid="1.2.3.4.5.900.1",
                path="results/x.dcm",
                sha256="0" * 64,
                size_bytes=1,
            )
        )
    echo = record(
        spool, sop="1.2.3.4.5.900.1", series="1.2.3.4.5.900", origin=InstanceOrigin.DERIVED
    )
    stored = store.store(echo, b"our own SEG")
    assert (stored.outcome, stored.origin) == (StoreOutcome.STORED, InstanceOrigin.OWN_RESULT)
    assert study_status(sessions) == StudyStatus.COMPLETE
    again = store.store(dataclasses.replace(echo), b"our own SEG")
    assert again.outcome is StoreOutcome.REPEATED
    assert study_status(sessions) == StudyStatus.COMPLETE


def test_a_segmentation_that_corrects_the_nodes_seg_is_the_reference_segmentation(
    sessions: sessionmaker[Session], spool: Spool
) -> None:
    store = InstanceStore(spool, InstanceLedger(sessions))
    store.store(record(spool), b"an MR image")
    with sessions.begin() as session:
        session.execute(update(Study).values(status=StudyStatus.COMPLETE.value))
        study_id = session.scalar(select(Study.id))
        assert study_id is not None
        job = create_job(session, study_id=study_id, state=JobState.DONE, trigger="forced")
        job.model_name, job.checkpoint_sha256 = "lumbarclip", "a" * 64
        session.add(
            Result(
                job_id=job.id,
                kind="seg",
                sop_instance_uid="1.2.3.4.5.900.1",
                path="results/x.dcm",
                sha256="0" * 64,
                size_bytes=1,
            )
        )
        job_id = job.id
    elsewhere = record(
        spool, sop="1.2.3.4.5.8.1", series="1.2.3.4.5.8", origin=InstanceOrigin.DERIVED
    )
    unrelated = dataclasses.replace(elsewhere, references=frozenset({SOP}))
    assert store.store(unrelated, b"a workstation's SEG").origin is InstanceOrigin.DERIVED
    corrected = dataclasses.replace(
        record(spool, sop="1.2.3.4.5.901.1", series="1.2.3.4.5.901", origin=InstanceOrigin.DERIVED),
        references=frozenset({SOP, "1.2.3.4.5.900.1"}),
    )
    stored = store.store(corrected, b"the SEG, corrected")
    assert (stored.outcome, stored.origin) == (StoreOutcome.STORED, InstanceOrigin.REFERENCE)
    assert store.store(corrected, b"the SEG, corrected").outcome is StoreOutcome.REPEATED
    assert study_status(sessions) == StudyStatus.COMPLETE
    with sessions() as session:
        (entry,) = feedback_for_study(session, job_id=job_id)
        origin = session.scalar(
            select(Series.origin).where(Series.series_instance_uid == "1.2.3.4.5.901")
        )
    assert origin == "reference"
    assert (entry.subject, entry.verdict, entry.amended_value) == (
        "segmentation",
        "amend",
        "reference SEG received",
    )
    assert (entry.given_by, entry.model_name, entry.reference_sop_instance_uid) == (
        "ae:PACS",
        "lumbarclip",
        "1.2.3.4.5.901.1",
    )


def test_a_segmentations_references_are_read_from_every_sequence() -> None:
    def item(**values: object) -> Dataset:
        ds = Dataset()
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        return ds

    seg = item(
        SOPClassUID=SegmentationStorage,
        ReferencedSeriesSequence=[
            item(ReferencedInstanceSequence=[item(ReferencedSOPInstanceUID="1.2.1")])
        ],
        PerFrameFunctionalGroupsSequence=[
            item(
                DerivationImageSequence=[
                    item(SourceImageSequence=[item(ReferencedSOPInstanceUID="1.2.2")])
                ]
            )
        ],
    )
    assert referenced_instances(seg) == {"1.2.1", "1.2.2"}
    seg.SOPClassUID = ComprehensiveSRStorage  # only a segmentation can be a reference one
    assert referenced_instances(seg) == frozenset()


def test_a_stripe_held_by_another_process_blocks_until_it_lets_go(tmp_path: Path) -> None:
    """Two SCP processes storing the same SOP Instance UID take turns (an ``flock``)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path\n"
            "from pacs_node.instance_store import StripeLocks\n"
            f"with StripeLocks(Path({str(tmp_path)!r})).holding({SOP!r}):\n"
            "    print('held', flush=True); sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline() == "held\n"
    acquired = threading.Event()

    def take() -> None:
        with StripeLocks(tmp_path).holding(SOP):
            acquired.set()

    taker = threading.Thread(target=take)
    taker.start()
    assert not acquired.wait(0.5)
    holder.stdin.close()  # the holder lets go and exits
    assert acquired.wait(60)
    taker.join()
    assert holder.wait(60) == 0
    holder.stdout.close()
