"""Read-only queries behind the admin API, dashboard and ``pacs-node jobs``.

The job history is paged by keyset (``created_at``, ``id``), newest first, so a page costs the
same at the millionth job as at the first. Results are plain frozen dataclasses that the API
returns as JSON and the CLI prints, so both show the same data.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, func, select, tuple_
from sqlalchemy.orm import Session

from pacs_node.db.base import utcnow
from pacs_node.db.jobs import count_by_state, review_reasons
from pacs_node.db.tables import (
    AuditLog,
    Delivery,
    Instance,
    Job,
    JobEvent,
    Result,
    Series,
    Study,
)
from pacs_node.domain import JobState
from pacs_node.validation import validate_uid

MAX_PAGE_SIZE = 500
HL7_CHANNEL = "hl7"


@dataclass(frozen=True)
class JobFilters:
    """Filters of the job history; ``None`` (or an empty ``states``) means "any".

    Raises:
        ValueError: if the date range is inverted or a date is naive.
        InvalidIdentifierError: if ``study_instance_uid`` is not a valid UID.
    """

    states: tuple[JobState, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    patient_id: str | None = None
    accession_number: str | None = None
    study_instance_uid: str | None = None
    calling_ae: str | None = None
    model_name: str | None = None

    def __post_init__(self) -> None:
        for moment in (self.created_from, self.created_to):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("dates must carry a time zone (e.g. 2026-01-01T00:00:00Z)")
        if self.created_from and self.created_to and self.created_from > self.created_to:
            raise ValueError("created_from is after created_to")
        if self.study_instance_uid is not None:
            validate_uid(self.study_instance_uid, "Study Instance UID")


@dataclass(frozen=True)
class JobSummary:
    """One row of the job history. ``needs_review`` is the model's quality check ("low
    confidence: review" when true, with its ``review_reasons``), None when no model ran."""

    id: int
    state: str
    version: int
    study_instance_uid: str
    patient_id: str | None
    accession_number: str | None
    calling_ae: str | None
    model_name: str | None
    needs_review: bool | None
    review_reasons: tuple[str, ...]
    trigger: str | None
    requested_by: str | None
    prior_job_id: int | None
    reason: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class JobPage:
    """A page of the history; pass ``next_cursor`` back to get the next (older) page."""

    items: list[JobSummary]
    next_cursor: str | None


@dataclass(frozen=True)
class EventView:
    """One entry of a job's timeline."""

    at: datetime
    state: str
    message: str
    details: dict[str, object]


@dataclass(frozen=True)
class SeriesView:
    """A series of the job's study, with the role series selection gave it."""

    series_instance_uid: str
    series_number: int | None
    series_description: str | None
    modality: str | None
    role: str | None
    instances: int


@dataclass(frozen=True)
class DeliveryView:
    """One result to one destination."""

    channel: str
    destination: str
    state: str
    attempts: int
    last_status: str | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


@dataclass(frozen=True)
class ResultView:
    """An output object of the job with its identity and per-destination delivery status."""

    id: int
    kind: str
    sop_class_uid: str | None
    series_instance_uid: str | None
    sop_instance_uid: str | None
    control_id: str | None
    created_at: datetime
    deliveries: list[DeliveryView]


@dataclass(frozen=True)
class ErrorView:
    """Something that went wrong: the job's failure reason, a failed step, a failed delivery."""

    source: str
    message: str
    at: datetime | None


@dataclass(frozen=True)
class JobDetail:
    """Everything the node knows about a job."""

    job: JobSummary
    retryable: bool
    supersedes_job_id: int | None
    config_hash: str | None
    checkpoint_sha256: str | None
    events: list[EventView]
    series: list[SeriesView]
    results: list[ResultView]
    hl7_acks: list[DeliveryView]
    errors: list[ErrorView]


@dataclass(frozen=True)
class DayStats:
    """Jobs created on one UTC day and how long the finished ones took."""

    day: date
    received: int
    done: int
    failed: int
    turnaround_p50_seconds: float | None
    turnaround_p95_seconds: float | None


@dataclass(frozen=True)
class Stats:
    """Counts by state, queue depth and per-day throughput and turnaround."""

    counts_by_state: dict[str, int]
    queue_depth: dict[str, int]
    days: list[DayStats] = field(default_factory=list)


def encode_cursor(created_at: datetime, job_id: int) -> str:
    """Opaque cursor pointing after (older than) the given job."""
    raw = json.dumps([created_at.astimezone(UTC).isoformat(), job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Inverse of :func:`encode_cursor`.

    Raises:
        ValueError: if the cursor was not made by :func:`encode_cursor`.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, job_id = json.loads(raw)
        created_at = datetime.fromisoformat(moment)
        if created_at.tzinfo is None or not isinstance(job_id, int):
            raise ValueError("malformed")
    except (binascii.Error, UnicodeDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"invalid cursor {cursor!r}") from exc
    return created_at, job_id


_SUMMARY_COLUMNS = (
    Job.id,
    Job.state,
    Job.version,
    Study.study_instance_uid,
    Study.patient_id,
    Study.accession_number,
    Study.calling_ae,
    Job.model_name,
    Job.needs_review,
    Job.review_reasons,
    Job.trigger,
    Job.requested_by,
    Job.prior_job_id,
    Job.reason,
    Job.attempts,
    Job.created_at,
    Job.updated_at,
)


def _summary_query() -> Select[*tuple[Any, ...]]:
    # Plain columns, not ORM entities: a page of the history is read-only and this is its hot path.
    return select(*_SUMMARY_COLUMNS).join(Study, Job.study_id == Study.id)


def _summary(row: Row[Any]) -> JobSummary:
    values = dict(row._mapping)
    values["review_reasons"] = review_reasons(values["review_reasons"])
    return JobSummary(**values)


def list_jobs(
    session: Session, filters: JobFilters, *, limit: int = 50, cursor: str | None = None
) -> JobPage:
    """A page of jobs matching ``filters``, newest first.

    Raises:
        ValueError: if ``limit`` is outside 1..MAX_PAGE_SIZE or the cursor is invalid.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    query = _summary_query()
    if filters.states:
        query = query.where(Job.state.in_([s.value for s in filters.states]))
    if filters.created_from is not None:
        query = query.where(Job.created_at >= filters.created_from)
    if filters.created_to is not None:
        query = query.where(Job.created_at < filters.created_to)
    if filters.model_name is not None:
        query = query.where(Job.model_name == filters.model_name)
    for column, value in (
        (Study.patient_id, filters.patient_id),
        (Study.accession_number, filters.accession_number),
        (Study.study_instance_uid, filters.study_instance_uid),
        (Study.calling_ae, filters.calling_ae),
    ):
        if value is not None:
            query = query.where(column == value)
    if cursor is not None:
        created_at, job_id = decode_cursor(cursor)
        query = query.where(tuple_(Job.created_at, Job.id) < tuple_(created_at, job_id))
    rows = session.execute(
        query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    ).all()
    items = [_summary(row) for row in rows[:limit]]
    more = len(rows) > limit
    next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if more else None
    return JobPage(items, next_cursor)


def _delivery_view(delivery: Delivery) -> DeliveryView:
    return DeliveryView(
        channel=delivery.channel,
        destination=delivery.destination,
        state=delivery.state,
        attempts=delivery.attempts,
        last_status=delivery.last_status,
        last_error=delivery.last_error,
        next_attempt_at=delivery.next_attempt_at,
        delivered_at=delivery.delivered_at,
    )


def _errors(job: Job, events: list[JobEvent], deliveries: list[Delivery]) -> list[ErrorView]:
    errors = [
        ErrorView("step", event.message, event.at)
        for event in events
        if event.state == JobState.FAILED or "error" in event.details
    ]
    if job.state == JobState.FAILED and job.reason:
        errors.append(ErrorView("job", job.reason, job.updated_at))
    errors.extend(
        ErrorView(f"delivery {d.channel} {d.destination}", d.last_error, d.updated_at)
        for d in deliveries
        if d.last_error
    )
    return errors


def job_detail(session: Session, job_id: int) -> JobDetail | None:
    """The job with its timeline, series, results, deliveries, HL7 ACKs and errors."""
    row = session.execute(_summary_query().where(Job.id == job_id)).first()
    job = session.get(Job, job_id)
    if row is None or job is None:
        return None
    events = list(
        session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
    )
    counts = func.count(Instance.id)
    series_rows = session.execute(
        select(Series, counts)
        .outerjoin(Instance, Instance.series_id == Series.id)
        .where(Series.study_id == job.study_id)
        .group_by(Series.id)
        .order_by(Series.series_number, Series.id)
    ).all()
    results = list(
        session.scalars(select(Result).where(Result.job_id == job_id).order_by(Result.id))
    )
    deliveries = list(
        session.scalars(select(Delivery).where(Delivery.job_id == job_id).order_by(Delivery.id))
    )
    by_result: dict[int, list[DeliveryView]] = defaultdict(list)
    for delivery in deliveries:
        by_result[delivery.result_id].append(_delivery_view(delivery))
    return JobDetail(
        job=_summary(row),
        retryable=job.retryable,
        supersedes_job_id=job.supersedes_job_id,
        config_hash=job.config_hash,
        checkpoint_sha256=job.checkpoint_sha256,
        events=[EventView(e.at, e.state, e.message, dict(e.details)) for e in events],
        series=[
            SeriesView(
                s.series_instance_uid,
                s.series_number,
                s.series_description,
                s.modality,
                s.role,
                int(n),
            )
            for s, n in series_rows
        ],
        results=[
            ResultView(
                r.id,
                r.kind,
                r.sop_class_uid,
                r.series_instance_uid,
                r.sop_instance_uid,
                r.control_id,
                r.created_at,
                by_result[r.id],
            )
            for r in results
        ],
        hl7_acks=[_delivery_view(d) for d in deliveries if d.channel == HL7_CHANNEL],
        errors=_errors(job, events, deliveries),
    )


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of ``values``, nearest-rank; None for no values.

    Raises:
        ValueError: if ``q`` is outside 0..100.
    """
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def queue_depth(session: Session, counts: Mapping[str, int] | None = None) -> dict[str, int]:
    """Jobs waiting for a worker, jobs being worked on and deliveries waiting to be sent.

    ``counts`` are the jobs by state if the caller already has them.
    """
    counts = count_by_state(session) if counts is None else counts
    pending = session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.state == "pending")
    )
    return {
        "jobs_queued": counts.get(JobState.QUEUED, 0),
        "jobs_running": counts.get(JobState.RUNNING, 0),
        "deliveries_pending": int(pending or 0),
    }


def stats(session: Session, *, days: int = 14, now: datetime | None = None) -> Stats:
    """Counts by state, queue depth, and per-day throughput and turnaround for ``days`` days.

    Turnaround is from job creation to ``done`` (a done job's ``updated_at``: done is terminal).

    Raises:
        ValueError: if ``days`` is outside 1..366.
    """
    if not 1 <= days <= 366:
        raise ValueError("days must be between 1 and 366")
    today = (now or utcnow()).astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    rows = session.execute(
        select(Job.created_at, Job.state, Job.updated_at).where(Job.created_at >= since)
    ).all()
    received: dict[date, int] = defaultdict(int)
    failed: dict[date, int] = defaultdict(int)
    turnaround: dict[date, list[float]] = defaultdict(list)
    for created_at, state, updated_at in rows:
        day = created_at.astimezone(UTC).date()
        received[day] += 1
        if state == JobState.FAILED:
            failed[day] += 1
        elif state == JobState.DONE:
            turnaround[day].append((updated_at - created_at).total_seconds())
    per_day = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        seconds = turnaround.get(day, [])
        per_day.append(
            DayStats(
                day,
                received.get(day, 0),
                len(seconds),
                failed.get(day, 0),
                percentile(seconds, 50),
                percentile(seconds, 95),
            )
        )
    counts = count_by_state(session)
    return Stats(counts, queue_depth(session, counts), per_day)


@dataclass(frozen=True)
class AuditEntry:
    """One admin action."""

    at: datetime
    actor: str
    action: str
    target: str | None
    remote_address: str | None
    details: dict[str, object]


def audit_entries(session: Session, *, limit: int = 100) -> list[AuditEntry]:
    """The latest admin actions, newest first.

    Raises:
        ValueError: if ``limit`` is outside 1..MAX_PAGE_SIZE.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    rows = session.scalars(select(AuditLog).order_by(AuditLog.id.desc()).limit(limit))
    return [
        AuditEntry(r.at, r.actor, r.action, r.target, r.remote_address, dict(r.details))
        for r in rows
    ]
