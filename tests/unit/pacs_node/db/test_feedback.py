"""Feedback on a job's results: recorded with the model, kept by study across job versions,
validated, audited, and summed into agreement rates per model version."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.db.admin_actions import JobNotFoundError
from pacs_node.db.feedback import (
    FeedbackItem,
    InvalidFeedbackError,
    NoResultsError,
    Tally,
    agreement_by_model,
    feedback_for_study,
    record_feedback,
)
from pacs_node.db.tables import AuditLog, Feedback, Job, Result, Study
from pacs_node.domain import JobState, StudyStatus

BULGE_L4 = FeedbackItem("L4/L5", "disc_bulge")
SCHMORL_L5 = FeedbackItem("L5/S1", "schmorl_node")
SEGMENTATION = FeedbackItem()


def add_job(
    session: Session,
    study: Study,
    *,
    state: JobState = JobState.DONE,
    checkpoint: str = "a" * 64,
    kinds: tuple[str, ...] = ("seg", "sr"),
) -> int:
    """A job of ``study`` (the next version) by model ``lumbarclip`` with results of ``kinds``."""
    job = Job(
        study=study,
        version=1 + len(study.jobs),
        state=state.value,
        model_name="lumbarclip",
        checkpoint_sha256=checkpoint,
        config_hash="c" * 64,
    )
    session.add(job)
    session.flush()
    for kind in kinds:
        session.add(
            Result(
                job_id=job.id,
                kind=kind,
                sop_instance_uid=f"2.25.{job.id}{len(kind)}",
                path=f"results/{job.id}/{kind}.dcm",
                sha256="0" * 64,
                size_bytes=1,
            )
        )
    return job.id


def add_study(session: Session, n: int = 1) -> Study:
    study = Study(study_instance_uid=f"1.2.3.{n}", status=StudyStatus.COMPLETE.value)
    session.add(study)
    session.flush()
    return study


def test_feedback_is_recorded_with_who_the_model_and_an_audit_entry(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        job_id = add_job(session, add_study(session))
        ids = record_feedback(
            session,
            job_id,
            [BULGE_L4, SEGMENTATION],
            "amend",
            given_by="dr-house",
            amended_value="absent",
            comment="a shadow, not a bulge",
            remote_address="10.0.0.9",
        )
    with sessions() as session:
        (entry, segmentation) = feedback_for_study(session, job_id=job_id)
        audit = session.scalars(select(AuditLog)).one()
    assert [entry.id, segmentation.id] == ids
    assert (entry.level, entry.abnormality, entry.verdict, entry.amended_value) == (
        "L4/L5",
        "disc_bulge",
        "amend",
        "absent",
    )
    assert (entry.given_by, entry.job_version, entry.model_name) == ("dr-house", 1, "lumbarclip")
    assert (entry.checkpoint_sha256, entry.config_hash) == ("a" * 64, "c" * 64)
    assert segmentation.subject == "segmentation" and segmentation.level is None
    assert (audit.actor, audit.action, audit.target) == ("dr-house", "feedback", f"job:{job_id}")
    assert audit.details == {"verdict": "amend", "feedback_ids": ids}  # never the comment


@pytest.mark.parametrize(
    ("items", "verdict", "value", "comment", "message"),
    [
        ([BULGE_L4], "maybe", None, None, "unknown verdict"),
        ([], "accept", None, None, "nothing"),
        ([BULGE_L4], "accept", "present", None, "only an amend"),
        ([BULGE_L4], "amend", None, None, "needs its value"),
        ([BULGE_L4], "amend", "perhaps", None, "'present' or 'absent'"),
        ([SEGMENTATION], "amend", "x" * 501, None, "needs its value"),
        ([BULGE_L4], "reject", None, "x" * 1001, "at most 1000"),
    ],
)
def test_malformed_feedback_is_refused(
    sessions: sessionmaker[Session],
    items: list[FeedbackItem],
    verdict: str,
    value: str | None,
    comment: str | None,
    message: str,
) -> None:
    with sessions.begin() as session:
        job_id = add_job(session, add_study(session))
        with pytest.raises(InvalidFeedbackError, match=message):
            record_feedback(
                session,
                job_id,
                items,
                verdict,
                given_by="dr-house",
                amended_value=value,
                comment=comment,
            )


def test_unknown_levels_and_abnormalities_are_refused() -> None:
    with pytest.raises(InvalidFeedbackError, match="disc level"):
        FeedbackItem("L9/L10", "disc_bulge")
    with pytest.raises(InvalidFeedbackError, match="abnormality"):
        FeedbackItem("L4/L5", "fracture")
    with pytest.raises(InvalidFeedbackError, match="both"):
        FeedbackItem("L4/L5")


@pytest.mark.parametrize(
    ("state", "kinds", "item"),
    [
        (JobState.SKIPPED, ("sr",), BULGE_L4),  # the not-analysed report only
        (JobState.FAILED, (), BULGE_L4),  # failed before its results
        (JobState.DONE, ("sr",), SEGMENTATION),  # no SEG to review
    ],
)
def test_a_job_without_the_results_reviewed_is_refused(
    sessions: sessionmaker[Session], state: JobState, kinds: tuple[str, ...], item: FeedbackItem
) -> None:
    with sessions.begin() as session:
        job_id = add_job(session, add_study(session), state=state, kinds=kinds)
        with pytest.raises(NoResultsError, match="no results to review"):
            record_feedback(session, job_id, [item], "accept", given_by="dr-house")
        with pytest.raises(JobNotFoundError):
            record_feedback(session, job_id + 1, [item], "accept", given_by="dr-house")


def test_feedback_is_kept_across_job_versions_of_the_study(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        study = add_study(session)
        other = add_study(session, 2)
        first = add_job(session, study, state=JobState.SUPERSEDED)
        record_feedback(session, first, [BULGE_L4], "reject", given_by="dr-house")
        second = add_job(session, study, checkpoint="b" * 64)
        record_feedback(session, second, [BULGE_L4], "accept", given_by="dr-wilson")
        record_feedback(session, add_job(session, other), [BULGE_L4], "accept", given_by="x")
        study_id = study.id
    with sessions() as session:
        by_job = feedback_for_study(session, job_id=second)
        by_study = feedback_for_study(session, study_id=study_id)
        with pytest.raises(JobNotFoundError):
            feedback_for_study(session, job_id=second + 100)
        with pytest.raises(ValueError, match="either"):
            feedback_for_study(session)
    assert by_job == by_study
    assert [(e.job_id, e.job_version, e.verdict, e.given_by) for e in by_job] == [
        (first, 1, "reject", "dr-house"),
        (second, 2, "accept", "dr-wilson"),
    ]


def test_agreement_rates_per_model_version_count_the_latest_verdicts(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        old = add_job(session, add_study(session, 1), checkpoint="a" * 64)
        new = add_job(session, add_study(session, 2), checkpoint="b" * 64)
        record_feedback(session, old, [BULGE_L4, SCHMORL_L5], "accept", given_by="r")
        record_feedback(session, old, [SCHMORL_L5], "reject", given_by="r")  # changed mind
        record_feedback(session, old, [SEGMENTATION], "accept", given_by="r")
        record_feedback(session, new, [BULGE_L4], "amend", given_by="r", amended_value="absent")
        record_feedback(session, new, [SCHMORL_L5], "accept", given_by="r")
        record_feedback(session, new, [SEGMENTATION], "amend", given_by="r", amended_value="L5")
    with sessions() as session:
        old_model, new_model = agreement_by_model(session)
    assert old_model.checkpoint_sha256 == "a" * 64
    assert old_model.findings == Tally(2, 1, 1, 0, 0.5)
    assert old_model.by_abnormality == {
        "disc_bulge": Tally(1, 1, 0, 0, 1.0),
        "schmorl_node": Tally(1, 0, 1, 0, 0.0),
    }
    assert old_model.segmentation == Tally(1, 1, 0, 0, 1.0)
    assert new_model.findings == Tally(2, 1, 0, 1, 0.5)
    assert new_model.segmentation == Tally(1, 0, 0, 1, 0.0)


def test_the_table_refuses_inconsistent_rows(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        study = add_study(session)
        job = {"study_id": study.id, "job_id": add_job(session, study), "given_by": "r"}
    for row in (
        Feedback(**job, subject="finding", verdict="accept"),  # no level
        Feedback(**job, subject="segmentation", verdict="amend"),  # no value
        Feedback(**job, subject="segmentation", verdict="maybe"),
    ):
        with pytest.raises(IntegrityError), sessions.begin() as session:
            session.add(row)
