"""Rows and files for admin API tests: studies, jobs in every state, a real SEG in a spool."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.db.jobs import add_event, review_columns
from pacs_node.db.tables import Delivery, Instance, Job, Result, Series, Study
from pacs_node.domain import JobState, StudyStatus
from pacs_node.results.inputs import AlgorithmInfo, ResultContext
from pacs_node.results.seg import build_seg
from tests.helpers.dicom_factory import StudySpec, make_series

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
DESTINATION = "PACS"
HL7 = "hl7"


def add_study(session: Session, n: int, *, patient_id: str | None = None, ae: str = "MOD") -> Study:
    """A completed study with deterministic identifiers derived from ``n``."""
    study = Study(
        study_instance_uid=f"1.2.826.0.1.3680043.10.1439.9.{n}",
        patient_id=patient_id or f"PID{n:04d}",
        accession_number=f"ACC{n:04d}",
        calling_ae=ae,
        status=StudyStatus.COMPLETE.value,
    )
    session.add(study)
    session.flush()
    return study


def add_job(
    session: Session,
    study: Study,
    state: JobState,
    *,
    created: datetime,
    minutes: float = 5.0,
    model: str = "lumbarclip-atto",
    reason: str | None = None,
    review_reasons: tuple[str, ...] | None = None,
) -> Job:
    """A job created at ``created`` and last updated ``minutes`` later, with one event; with
    ``review_reasons``, the model's quality check (passed when empty)."""
    quality = {} if review_reasons is None else review_columns(bool(review_reasons), review_reasons)
    job = Job(
        study=study,
        version=1 + len(study.jobs),
        state=state.value,
        reason=reason,
        model_name=model,
        attempts=1,
        created_at=created,
        updated_at=created + timedelta(minutes=minutes),
        **quality,
    )
    session.add(job)
    session.flush()
    add_event(session, job, f"now {state.value}")
    return job


def add_checked_jobs(session: Session, reasons: tuple[str, ...]) -> list[int]:
    """Three done jobs, an hour apart, of three studies: one whose quality check asks for review
    with ``reasons``, one whose check passed, one with no check (no model ran); their ids."""
    return [
        add_job(
            session,
            add_study(session, n),
            JobState.DONE,
            created=T0.replace(hour=n),
            review_reasons=checked,
        ).id
        for n, checked in enumerate((reasons, (), None))
    ]


def add_outputs(session: Session, job: Job) -> tuple[Result, Result]:
    """A SEG sent to the PACS (and dead on a second peer) and an ORU the RIS answered AE."""
    seg = Result(
        job_id=job.id,
        kind="seg",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.66.4",
        series_instance_uid=f"2.25.{job.id}1",
        sop_instance_uid=f"2.25.{job.id}2",
        path=f"results/{job.id}/seg.dcm",
        sha256="0" * 64,
        size_bytes=1,
    )
    oru = Result(
        job_id=job.id,
        kind="oru",
        control_id=f"PN{job.id:08d}",
        path=f"results/{job.id}/oru.hl7",
        sha256="1" * 64,
        size_bytes=1,
    )
    session.add_all([seg, oru])
    session.flush()
    now = job.updated_at
    session.add_all(
        [
            Delivery(
                job_id=job.id,
                result_id=seg.id,
                channel="dicom",
                destination=DESTINATION,
                state="sent",
                attempts=1,
                last_status="0x0000",
                delivered_at=now,
            ),
            Delivery(
                job_id=job.id,
                result_id=seg.id,
                channel="dicom",
                destination="ARCHIVE",
                state="dead",
                attempts=5,
                last_status="0xA700",
                last_error="out of resources",
            ),
            Delivery(
                job_id=job.id,
                result_id=oru.id,
                channel="hl7",
                destination=HL7,
                state="dead",
                attempts=3,
                last_status="AE",
                last_error="ACK AE: unknown patient",
            ),
        ]
    )
    return seg, oru


def seg_job(sessions: sessionmaker[Session], spool: Path) -> int:
    """A done job whose SEG (built by the node's writer) and source images are in ``spool``."""
    spec = StudySpec(seed=77, series=("T2 TSE SAG",), slices=5, size=32)
    images = list(make_series(spec, "T2 TSE SAG"))
    for ds in images:  # patient and study module attributes a SEG copies from its source
        ds.PatientBirthDate, ds.PatientSex, ds.ReferringPhysicianName = "19700101", "F", ""
        ds.StudyDate, ds.StudyTime, ds.StudyID = "20260301", "080000", "1"
        ds.PositionReferenceIndicator, ds.Manufacturer = "", "ACME"
    labels = np.zeros((len(images), 32, 32), dtype=np.uint8)
    labels[1:4, 4:12, 8:20] = 3  # L4
    labels[1:4, 12:15, 8:20] = 12  # L4/L5
    labels[2, 15:24, 8:20] = 2  # L5, biggest on slice 3
    seg = build_seg(
        images,
        labels,
        {"L5": 2, "L4": 3, "L4/L5": 12},
        algorithm=AlgorithmInfo("lumbarclip", "0.1", "ab" * 32, "cfg"),
        context=ResultContext(
            job_key="seed/1", created=T0.replace(tzinfo=None), software_version="0"
        ),
    )
    with sessions.begin() as session:
        study = Study(
            study_instance_uid=spec.study_uid,
            patient_id=spec.patient_id,
            accession_number="ACCSEG",
            calling_ae="MOD",
            status=StudyStatus.COMPLETE.value,
        )
        series = Series(study=study, series_instance_uid=images[0].SeriesInstanceUID, role="SAG_T2")
        session.add_all([study, series])
        for ds in images:
            relative = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
            (spool / relative).parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(spool / relative, enforce_file_format=True)
            session.add(
                Instance(
                    series=series,
                    sop_instance_uid=ds.SOPInstanceUID,
                    sop_class_uid=ds.SOPClassUID,
                    transfer_syntax_uid=ds.file_meta.TransferSyntaxUID,
                    path=relative,
                    size_bytes=(spool / relative).stat().st_size,
                )
            )
        job = add_job(session, study, JobState.DONE, created=T0)
        relative = f"results/{job.id}/seg.dcm"
        (spool / relative).parent.mkdir(parents=True)
        seg.save_as(spool / relative)
        session.add(
            Result(
                job_id=job.id,
                kind="seg",
                sop_class_uid=seg.SOPClassUID,
                series_instance_uid=seg.SeriesInstanceUID,
                sop_instance_uid=seg.SOPInstanceUID,
                path=relative,
                sha256="2" * 64,
                size_bytes=(spool / relative).stat().st_size,
            )
        )
        return job.id
