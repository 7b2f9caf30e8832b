"""``pacs-node export``: a canary study through the node's analysis (the real pipeline, a fake
model), exported and checked byte by byte; the selection of jobs; the argument errors."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.dataset import Dataset
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models.labels import load_label_scheme
from pacs_node.config import Settings
from pacs_node.db.feedback import FeedbackItem, Verdict, record_feedback
from pacs_node.db.jobs import create_job
from pacs_node.db.tables import AuditLog, Job, Result, Study
from pacs_node.domain import JobState, StudyStatus
from pacs_node.export.deidentify import Deidentifier
from pacs_node.export.selection import ExportSelectionError, select_named, select_since
from pacs_node.results.sr_findings import findings_from_sr
from pacs_node.spool import Spool
from tests.helpers.canary_study import (
    assert_nothing_identifying,
    assert_references_resolve,
    canary_strings,
    exported_files,
    instance_uids,
    write_canary_study,
)
from tests.unit.worker.conftest import FakePredictor, RecordingQueue
from tests.unit.worker.test_runner import POLICY, received_study
from worker.dicom_dataset import load_dicom_folder
from worker.main import main
from worker.runner import JobRunner

DCIODVFY = Path("/usr/bin/dciodvfy")


@pytest.fixture
def node_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> Settings:
    """The node's settings, in the environment too (as ``pacs-node export`` reads them)."""
    monkeypatch.setenv("PACS_NODE_DATABASE_URL", database_url)
    monkeypatch.setenv("PACS_NODE_SPOOL_DIR", str(tmp_path / "spool"))
    return Settings(database_url=database_url, spool_dir=tmp_path / "spool", policy=POLICY)


def analysed_job(sessions: sessionmaker[Session], settings: Settings, folder: Path) -> int:
    """A canary study received and analysed by the node's pipeline; returns its job."""
    runner = JobRunner(
        settings=settings,
        sessions=sessions,
        spool=Spool(settings.spool_dir),
        queue=RecordingQueue(),
        predictor_factory=FakePredictor,
    )
    job_id = received_study(sessions, runner.spool, write_canary_study(41, folder))
    assert runner.analyse(job_id)
    return job_id


def iod_errors(path: Path) -> set[str]:
    """dciodvfy's error lines for a file."""
    checked = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return {line for line in checked.stderr.splitlines() if line.startswith("Error")}


def node_objects(sessions: sessionmaker[Session], spool: Path) -> dict[str, Path]:
    with sessions() as session:
        rows = session.execute(select(Result.kind, Result.path)).all()
    return {kind: spool / path for kind, path in rows}


def test_export_of_a_canary_study_holds_nothing_identifying_and_trains(
    sessions: sessionmaker[Session], node_env: Settings, tmp_path: Path
) -> None:
    job_id = analysed_job(sessions, node_env, tmp_path / "study")
    with sessions.begin() as session:
        item = FeedbackItem("L4/L5", "disc_bulge")
        record_feedback(
            session, job_id, [item], Verdict.AMEND, amended_value="absent",
            given_by="CANARYREVIEWER", comment="CANARYCOMMENTTEXT",
        )  # fmt: skip
    originals = node_objects(sessions, node_env.spool_dir)
    out = tmp_path / "export"

    assert main(["export", "--jobs", str(job_id), "--out", str(out)]) == 0

    source_files = sorted((tmp_path / "study").rglob("*.dcm"))
    forbidden = [
        *canary_strings(),
        "CANARYREVIEWER",
        "CANARYCOMMENTTEXT",
        *instance_uids([*source_files, originals["seg"], originals["sr"]]),
    ]
    assert_nothing_identifying(out, forbidden)
    manifest = json.loads((out / "manifest.json").read_text())
    (study,) = manifest["studies"]
    folder = out / study["folder"]
    assert study["folder"] == "study-0001"
    assert {f["kind"] for f in study["files"]} == {"image", "seg", "sr", "results"}
    assert all((folder / f["path"]).is_file() for f in study["files"])
    assert manifest["deidentification"]["method_codes"][0]["value"] == "113100"
    assert_references_resolve(folder)

    seg, sr = hd.seg.segread(folder / "seg.dcm"), hd.sr.srread(folder / "sr.dcm")
    assert study["study_instance_uid"] == seg.StudyInstanceUID == sr.StudyInstanceUID
    for ds in (seg, sr, pydicom.dcmread(next(folder.glob("SAG_T2/*.dcm")))):
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert not [e for e in ds.iterall() if e.tag.is_private]
    if DCIODVFY.exists():
        for kind in ("seg", "sr"):
            assert iod_errors(folder / f"{kind}.dcm") <= iod_errors(originals[kind]), kind

    results = json.loads((folder / "results.json").read_text())
    assert {k: v["findings"] for k, v in results["levels"].items()} == findings_from_sr(
        originals["sr"]
    )
    (verdict,) = results["feedback"]
    assert verdict["verdict"] == "amend" and verdict["amended_value"] == "absent"
    assert verdict["on_exported_results"] and "comment" not in verdict

    (sample,) = load_dicom_folder(out, load_label_scheme())
    assert sample.study_id == study["study_instance_uid"]
    assert sample.labels is not None and sample.labels.any() and sample.annotated
    with sessions() as session:
        (audit,) = session.scalars(select(AuditLog).where(AuditLog.action == "export"))
    assert audit.actor.startswith("cli:")
    assert audit.details == {"studies": 1, "images": study_images(study), "burned_in_left_out": 0}


def study_images(study: dict[str, list[dict[str, str]]]) -> int:
    return sum(f["kind"] == "image" for f in study["files"])


def uid_dataset(uid: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.StudyInstanceUID = uid
    ds.SOPClassUID = pydicom.uid.MRImageStorage
    return ds


def test_uids_map_alike_within_an_export_and_differ_across_exports() -> None:
    first, again, other = uid_dataset("1.2.3.4"), uid_dataset("1.2.3.4"), uid_dataset("1.2.3.4")
    export = Deidentifier()
    export(first)
    export(again)
    Deidentifier()(other)
    assert first.StudyInstanceUID == again.StudyInstanceUID != other.StudyInstanceUID
    assert "1.2.3.4" not in first.StudyInstanceUID
    assert first.SOPClassUID == pydicom.uid.MRImageStorage


def add_job(
    session: Session, study: Study, state: JobState, *, skip: str | None = None, results: bool
) -> int:
    job = create_job(session, study_id=study.id, state=state, trigger="forced", skip_reason=skip)
    if results:
        for kind in ("seg", "sr"):
            session.add(Result(job_id=job.id, kind=kind, path=f"{kind}-{job.id}", sha256="0",
                               size_bytes=1))  # fmt: skip
    session.flush()
    return job.id


def test_selection_takes_the_latest_analysis_per_study_or_the_named_jobs(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        studies = [
            Study(study_instance_uid=f"1.2.3.{n}", status=StudyStatus.COMPLETE) for n in range(5)
        ]
        session.add_all(studies)
        session.flush()
        superseded = add_job(session, studies[0], JobState.DONE, results=True)
        latest = add_job(session, studies[0], JobState.DELIVERING, results=True)
        session.execute(update(Job).where(Job.id == superseded).values(state="superseded"))
        skipped = add_job(session, studies[1], JobState.SKIPPED, skip="knee", results=False)
        failed = add_job(session, studies[2], JobState.FAILED, results=False)
        done = add_job(session, studies[3], JobState.DONE, results=True)
        running = add_job(session, studies[4], JobState.RUNNING, results=False)
    with sessions() as session:
        since = select_since(session, datetime(2000, 1, 1, tzinfo=UTC))
        assert sorted(j.job_id for j in since) == [latest, done]
        assert [j.job_id for j in select_named(session, [superseded])] == [superseded]
        assert select_named(session, [done])[0].seg == f"seg-{done}"
        for job_ids, message in (
            ([999], "no job 999"),
            ([skipped], "did not analyse"),
            ([failed], "did not analyse"),
            ([running], "did not analyse"),
            ([superseded, latest], "one study"),
        ):
            with pytest.raises(ExportSelectionError, match=message):
                select_named(session, job_ids)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--jobs", "1,x"], "--jobs: give job ids"),
        (["--jobs", "0"], "--jobs: give job ids"),
        (["--since", "yesterday"], "--since: give an ISO date"),
        (["--since", "2999-01-01"], "no analysed study since"),
        (["--jobs", "7"], "no job 7"),
    ],
)
def test_bad_arguments_are_clear_errors(
    node_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    assert main(["export", *arguments, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_out_folder_that_is_not_empty_is_refused(
    node_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert main(["export", "--jobs", "1", "--out", str(tmp_path / "out")]) == 2
    assert "--out exists and is not an empty folder" in capsys.readouterr().err
    assert exported_files(tmp_path / "out") == [tmp_path / "out" / "keep.txt"]


def test_a_study_with_burned_in_annotation_is_left_out(
    sessions: sessionmaker[Session], node_env: Settings, tmp_path: Path
) -> None:
    job_id = analysed_job(sessions, node_env, tmp_path / "study")
    with sessions() as session:
        first = select_named(session, [job_id])[0].images["SAG_T2"][0]
    image = node_env.spool_dir / first
    ds = pydicom.dcmread(image)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(image, enforce_file_format=True)

    assert main(["export", "--jobs", str(job_id), "--out", str(tmp_path / "out")]) == 0

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["studies"] == []
    assert manifest["left_out"] == {"studies_with_burned_in_annotation": 1}
    assert exported_files(tmp_path / "out") == [tmp_path / "out" / "manifest.json"]
