"""Reviewers' feedback on a job's results (what IHE AIRAI records): a verdict per finding (a disc
level's abnormality) or on the segmentation as a whole, kept by study across job versions.

* accept: the model's call is right; reject: it is wrong; amend: it is wrong and here is the
  right value (``present``/``absent`` for a finding, a note for the segmentation);
* each row copies the model (name, checkpoint, config) from its job, so agreement rates are per
  model version (:func:`agreement_by_model`), counting the latest verdict per job and subject;
* a corrected SEG sent back to the node (it references the node's SEG) is kept as the study's
  reference segmentation and recorded here as an ``amend`` of the segmentation by the sender
  (:func:`record_reference_segmentation`, called by the ledger as it stores the instance).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection, Select, func, insert, select
from sqlalchemy.orm import Session

from pacs_node.db.admin_actions import JobNotFoundError, record_audit
from pacs_node.db.base import utcnow
from pacs_node.db.tables import Feedback, Instance, Job, Result
from pacs_node.domain import JobState, ResultKind
from pacs_node.errors import NodeError
from pacs_node.results.codes import ABNORMALITY_CODES, DISC_CODES

MAX_COMMENT = 1000
MAX_NOTE = 500
FINDING_VALUES = ("present", "absent")
REFERENCE_NOTE = "reference SEG received"


class Verdict(StrEnum):
    """What a reviewer says of a model's output."""

    ACCEPT = "accept"
    REJECT = "reject"
    AMEND = "amend"


class Subject(StrEnum):
    """What a verdict is about."""

    FINDING = "finding"
    SEGMENTATION = "segmentation"


class InvalidFeedbackError(NodeError, ValueError):
    """The feedback names an unknown level or abnormality, or its values are malformed."""


class NoResultsError(NodeError):
    """The job has no results to review (skipped, or failed before it made any)."""


@dataclass(frozen=True)
class FeedbackItem:
    """One subject of a verdict: a level's finding, or the segmentation (both fields ``None``).

    Raises:
        InvalidFeedbackError: if only one field is given, or either is not in the vocabulary.
    """

    level: str | None = None
    abnormality: str | None = None

    def __post_init__(self) -> None:
        if (self.level is None) != (self.abnormality is None):
            raise InvalidFeedbackError("a finding needs both its level and its abnormality")
        if self.level is not None and self.level not in DISC_CODES:
            raise InvalidFeedbackError(f"unknown disc level {self.level!r}")
        if self.abnormality is not None and self.abnormality not in ABNORMALITY_CODES:
            raise InvalidFeedbackError(f"unknown abnormality {self.abnormality!r}")

    @property
    def subject(self) -> Subject:
        """A finding or the segmentation."""
        return Subject.SEGMENTATION if self.level is None else Subject.FINDING


@dataclass(frozen=True)
class FeedbackEntry:
    """One verdict as given, with the job version and model it was given on."""

    id: int
    job_id: int
    job_version: int
    subject: str
    level: str | None
    abnormality: str | None
    verdict: str
    amended_value: str | None
    comment: str | None
    given_by: str
    given_at: datetime
    model_name: str | None
    checkpoint_sha256: str | None
    config_hash: str | None
    reference_sop_instance_uid: str | None
    """A reference segmentation: the corrected SEG the node received and holds."""


@dataclass(frozen=True)
class Tally:
    """Latest verdicts on one kind of subject; ``agreement_rate`` is accepted / reviewed."""

    reviewed: int = 0
    accepted: int = 0
    rejected: int = 0
    amended: int = 0
    agreement_rate: float | None = None


@dataclass(frozen=True)
class ModelAgreement:
    """How reviewers judged one model version's findings and segmentations."""

    model_name: str | None
    checkpoint_sha256: str | None
    config_hash: str | None
    findings: Tally
    segmentation: Tally
    by_abnormality: dict[str, Tally] = field(default_factory=dict)


def record_feedback(
    session: Session,
    job_id: int,
    items: Sequence[FeedbackItem],
    verdict: Verdict | str,
    *,
    given_by: str,
    amended_value: str | None = None,
    comment: str | None = None,
    remote_address: str | None = None,
) -> list[int]:
    """Record one verdict on each item of a job's results, audited (caller commits).

    Returns:
        The new feedback rows' ids, in the order of ``items``.

    Raises:
        JobNotFoundError: if there is no such job.
        InvalidFeedbackError: if the verdict, amended value or comment is malformed.
        NoResultsError: if the job has no result of the kind an item reviews.
    """
    verdict = _verdict(verdict)
    _check_values(items, verdict, amended_value, comment)
    job = session.get(Job, job_id)
    if job is None:
        raise JobNotFoundError(f"no job {job_id}")
    _check_reviewable(session, job, {item.subject for item in items})
    rows = [
        Feedback(
            study_id=job.study_id,
            job_id=job.id,
            subject=item.subject.value,
            level=item.level,
            abnormality=item.abnormality,
            verdict=verdict.value,
            amended_value=amended_value if verdict is Verdict.AMEND else None,
            comment=comment or None,
            given_by=given_by[:64],
            model_name=job.model_name,
            checkpoint_sha256=job.checkpoint_sha256,
            config_hash=job.config_hash,
        )
        for item in items
    ]
    session.add_all(rows)
    session.flush()
    ids = [row.id for row in rows]
    record_audit(
        session,
        actor=given_by,
        action="feedback",
        target=f"job:{job_id}",
        remote_address=remote_address,
        details={"verdict": verdict.value, "feedback_ids": ids},
    )
    return ids


def _verdict(verdict: Verdict | str) -> Verdict:
    try:
        return Verdict(verdict)
    except ValueError as exc:
        raise InvalidFeedbackError(f"unknown verdict {verdict!r}") from exc


def _check_values(
    items: Sequence[FeedbackItem], verdict: Verdict, amended_value: str | None, comment: str | None
) -> None:
    if not items:
        raise InvalidFeedbackError("nothing to give feedback on")
    if comment is not None and len(comment) > MAX_COMMENT:
        raise InvalidFeedbackError(f"a comment has at most {MAX_COMMENT} characters")
    if verdict is not Verdict.AMEND:
        if amended_value is not None:
            raise InvalidFeedbackError("only an amend carries an amended value")
        return
    if not amended_value or len(amended_value) > MAX_NOTE:
        raise InvalidFeedbackError(f"an amend needs its value (1-{MAX_NOTE} characters)")
    if any(item.subject is Subject.FINDING for item in items) and (
        amended_value not in FINDING_VALUES
    ):
        raise InvalidFeedbackError("an amended finding is 'present' or 'absent'")


def _check_reviewable(session: Session, job: Job, subjects: set[Subject]) -> None:
    kinds = set(session.scalars(select(Result.kind).where(Result.job_id == job.id)))
    needed = {Subject.FINDING: ResultKind.SR.value, Subject.SEGMENTATION: ResultKind.SEG.value}
    missing = {needed[subject] for subject in subjects} - kinds
    if job.state == JobState.SKIPPED.value or missing:
        raise NoResultsError(
            f"job {job.id} has no results to review ({job.state}, "
            f"results: {', '.join(sorted(kinds)) or 'none'})"
        )


def record_reference_segmentation(
    conn: Connection, *, job_id: int, instance_id: int, sender: str | None
) -> None:
    """Record a received SEG that corrects job ``job_id``'s SEG (in the caller's transaction)."""
    job = conn.execute(
        select(Job.study_id, Job.model_name, Job.checkpoint_sha256, Job.config_hash).where(
            Job.id == job_id
        )
    ).one()
    conn.execute(
        insert(Feedback).values(
            study_id=job.study_id,
            job_id=job_id,
            subject=Subject.SEGMENTATION.value,
            verdict=Verdict.AMEND.value,
            amended_value=REFERENCE_NOTE,
            given_by=f"ae:{sender or 'unknown'}",
            given_at=utcnow(),
            model_name=job.model_name,
            checkpoint_sha256=job.checkpoint_sha256,
            config_hash=job.config_hash,
            reference_instance_id=instance_id,
        )
    )


def feedback_for_study(
    session: Session, *, study_id: int | None = None, job_id: int | None = None
) -> list[FeedbackEntry]:
    """Every verdict on a study's results, oldest first, whichever job version it was given on.

    Give the study's row id, or the id of any of its jobs.

    Raises:
        ValueError: unless exactly one of ``study_id`` and ``job_id`` is given.
        JobNotFoundError: if ``job_id`` names no job.
    """
    if (study_id is None) == (job_id is None):
        raise ValueError("give either study_id or job_id")
    if job_id is not None:
        study_id = session.scalar(select(Job.study_id).where(Job.id == job_id))
        if study_id is None:
            raise JobNotFoundError(f"no job {job_id}")
    rows = session.execute(
        select(
            Feedback.id,
            Feedback.job_id,
            Job.version.label("job_version"),
            Feedback.subject,
            Feedback.level,
            Feedback.abnormality,
            Feedback.verdict,
            Feedback.amended_value,
            Feedback.comment,
            Feedback.given_by,
            Feedback.given_at,
            Feedback.model_name,
            Feedback.checkpoint_sha256,
            Feedback.config_hash,
            Instance.sop_instance_uid.label("reference_sop_instance_uid"),
        )
        .join(Job, Job.id == Feedback.job_id)
        .outerjoin(Instance, Instance.id == Feedback.reference_instance_id)
        .where(Feedback.study_id == study_id)
        .order_by(Feedback.given_at, Feedback.id)
    ).all()
    return [FeedbackEntry(**row._asdict()) for row in rows]


def latest_verdicts() -> Select[int]:
    """Ids of the latest verdict per job and subject (a reviewer may change their mind)."""
    return select(func.max(Feedback.id)).group_by(
        Feedback.job_id, Feedback.subject, Feedback.level, Feedback.abnormality
    )


def agreement_by_model(session: Session) -> list[ModelAgreement]:
    """Per model version: the latest verdicts on its findings (all, and per abnormality) and
    segmentations, and the agreement rate (accepted / reviewed) of each."""
    model = (Feedback.model_name, Feedback.checkpoint_sha256, Feedback.config_hash)
    rows = session.execute(
        select(*model, Feedback.subject, Feedback.abnormality, Feedback.verdict, func.count())
        .where(Feedback.id.in_(latest_verdicts()))
        .group_by(*model, Feedback.subject, Feedback.abnormality, Feedback.verdict)
    ).all()
    counts: dict[tuple[str | None, ...], dict[str, Counter[str]]] = defaultdict(
        lambda: defaultdict(Counter)
    )
    for name, checkpoint, config, subject, abnormality, verdict, count in rows:
        per_model = counts[(name, checkpoint, config)]
        if subject == Subject.SEGMENTATION.value:
            per_model[Subject.SEGMENTATION.value][verdict] += count
            continue
        per_model[Subject.FINDING.value][verdict] += count
        per_model[f"abnormality:{abnormality}"][verdict] += count
    return [
        ModelAgreement(
            model_name=name,
            checkpoint_sha256=checkpoint,
            config_hash=config,
            findings=_tally(tallies[Subject.FINDING.value]),
            segmentation=_tally(tallies[Subject.SEGMENTATION.value]),
            by_abnormality={
                key.removeprefix("abnormality:"): _tally(verdicts)
                for key, verdicts in sorted(tallies.items())
                if key.startswith("abnormality:")
            },
        )
        for (name, checkpoint, config), tallies in sorted(counts.items(), key=_model_order)
    ]


def _model_order(item: tuple[tuple[str | None, ...], object]) -> tuple[str, ...]:
    return tuple(part or "" for part in item[0])


def _tally(verdicts: Counter[str]) -> Tally:
    reviewed = sum(verdicts.values())
    accepted = verdicts[Verdict.ACCEPT.value]
    return Tally(
        reviewed=reviewed,
        accepted=accepted,
        rejected=verdicts[Verdict.REJECT.value],
        amended=verdicts[Verdict.AMEND.value],
        agreement_rate=accepted / reviewed if reviewed else None,
    )


def feedback_counts(
    session: Session,
) -> list[tuple[str | None, str | None, str | None, str, str, int]]:
    """(model name, checkpoint, config, subject, verdict, count) of every verdict ever given."""
    columns = (
        Feedback.model_name,
        Feedback.checkpoint_sha256,
        Feedback.config_hash,
        Feedback.subject,
        Feedback.verdict,
    )
    rows = session.execute(select(*columns, func.count()).group_by(*columns)).all()
    return [
        (name, checkpoint, config, subject, verdict, count)
        for name, checkpoint, config, subject, verdict, count in rows
    ]
