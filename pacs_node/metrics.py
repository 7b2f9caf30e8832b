"""Prometheus metrics of the node.

Two sources, one registry per process:

* the database, read at scrape time (:class:`DatabaseCollector`): instances received (by
  origin) and different copies not stored, studies
  completed, jobs by state, queue depth, deliveries by channel (dicom, hl7) and state (dead ones
  are the delivery and HL7 failures), deliveries waiting for a retry after a failed attempt, and
  reviewers' feedback (verdicts by model version, and each version's agreement rate).
  The database is the truth shared by every process, so any process serving ``/metrics`` reports
  the same counts;
* histograms of stage durations and model inference time (:class:`NodeMetrics`), fed from the
  ``timings`` that workers write into job events (``{"timings": {"inference": 1.2}}``), read
  incrementally at each scrape from the process's start on (counters restart with the process,
  as Prometheus expects).

Labels are fixed vocabularies (stage, state, channel, queue, subject, verdict) or a model
version (name and hash prefixes): never a UID, name or patient ID.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.db.feedback import ModelAgreement, Subject, agreement_by_model, feedback_counts
from pacs_node.db.jobs import count_by_state
from pacs_node.db.queries import queue_depth
from pacs_node.db.tables import Delivery, Instance, JobEvent, Series, Study
from pacs_node.domain import InstanceOrigin, JobState, StudyStatus

LOG = logging.getLogger(__name__)
NAMESPACE = "pacs_node"
INFERENCE_STAGE = "inference"
STAGE_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
INFERENCE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
FEED_BATCH = 10_000
"""Most job events read per scrape (a backlog is worked off over the next scrapes)."""


class DatabaseCollector(Collector):
    """Counts read from the database at each scrape."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families (one short read transaction)."""
        with self._sessions() as session:
            by_origin = session.execute(
                select(Series.origin, func.count(Instance.id))
                .join(Instance, Instance.series_id == Series.id)
                .group_by(Series.origin)
            ).all()
            different_copies = session.scalar(select(func.sum(Instance.different_copies))) or 0
            completed = session.scalar(
                select(func.count())
                .select_from(Study)
                .where(Study.status == StudyStatus.COMPLETE.value)
            )
            counts = count_by_state(session)
            depth = queue_depth(session, counts)
            deliveries = session.execute(
                select(Delivery.channel, Delivery.state, func.count()).group_by(
                    Delivery.channel, Delivery.state
                )
            ).all()
            retrying = session.execute(
                select(Delivery.channel, func.count())
                .where(Delivery.state == "pending", Delivery.attempts > 0)
                .group_by(Delivery.channel)
            ).all()
            verdicts = feedback_counts(session)
            agreement = agreement_by_model(session)
        received = CounterMetricFamily(
            f"{NAMESPACE}_instances_received",
            "SOP instances stored (distinct; re-sent instances count once), by origin: source "
            "images, derived objects, the node's own results sent back (these never start a job)",
            labels=["origin"],
        )
        counts_by_origin = {str(origin): int(count) for origin, count in by_origin}
        for origin in InstanceOrigin:
            received.add_metric([origin.value], counts_by_origin.get(origin.value, 0))
        yield received
        yield CounterMetricFamily(
            f"{NAMESPACE}_instance_copies_ignored",
            "Copies with other content sent under a SOP Instance UID already held (the first "
            "copy is kept)",
            value=int(different_copies),
        )
        yield CounterMetricFamily(
            f"{NAMESPACE}_studies_completed",
            "Studies judged complete by assembly",
            value=completed or 0,
        )
        jobs = GaugeMetricFamily(f"{NAMESPACE}_jobs", "Jobs by state", labels=["state"])
        for job_state in JobState:
            jobs.add_metric([job_state.value], counts.get(job_state.value, 0))
        yield jobs
        queue = GaugeMetricFamily(
            f"{NAMESPACE}_queue_depth", "Work waiting or in progress", labels=["queue"]
        )
        for name, value in depth.items():
            queue.add_metric([name], value)
        yield queue
        by_state = GaugeMetricFamily(
            f"{NAMESPACE}_deliveries",
            "Deliveries by channel (dicom, hl7) and state (pending, committing, sent, dead)",
            labels=["channel", "state"],
        )
        for channel, state, count in deliveries:
            by_state.add_metric([channel, state], count)
        yield by_state
        waiting = GaugeMetricFamily(
            f"{NAMESPACE}_deliveries_retrying",
            "Pending deliveries whose last attempt failed, by channel",
            labels=["channel"],
        )
        for channel, count in retrying:
            waiting.add_metric([channel], count)
        yield waiting
        yield from _feedback_metrics(verdicts, agreement)


MODEL_LABELS = ["model", "checkpoint", "config"]
"""A model version: its name and the first 12 hex digits of its checkpoint and config hashes."""


def _model_labels(name: str | None, checkpoint: str | None, config: str | None) -> list[str]:
    return [name or "none", (checkpoint or "none")[:12], (config or "none")[:12]]


def _feedback_metrics(
    verdicts: list[tuple[str | None, str | None, str | None, str, str, int]],
    agreement: list[ModelAgreement],
) -> Iterator[Metric]:
    """Reviewers' verdicts given, and the agreement rate of each model version."""
    given = CounterMetricFamily(
        f"{NAMESPACE}_feedback",
        "Reviewers' verdicts (accept, reject, amend) on findings and segmentations, by model "
        "version; a corrected SEG sent back counts as an amended segmentation",
        labels=[*MODEL_LABELS, "subject", "verdict"],
    )
    for name, checkpoint, config, subject, verdict, count in verdicts:
        given.add_metric([*_model_labels(name, checkpoint, config), subject, verdict], count)
    yield given
    rate = GaugeMetricFamily(
        f"{NAMESPACE}_feedback_agreement_ratio",
        "Accepted / reviewed of each model version's findings and segmentations (the latest "
        "verdict per job and subject)",
        labels=[*MODEL_LABELS, "subject"],
    )
    for model in agreement:
        labels = _model_labels(model.model_name, model.checkpoint_sha256, model.config_hash)
        for subject, tally in (
            (Subject.FINDING, model.findings),
            (Subject.SEGMENTATION, model.segmentation),
        ):
            if tally.agreement_rate is not None:
                rate.add_metric([*labels, subject.value], tally.agreement_rate)
    yield rate


class TimingFeed:
    """Reads the ``timings`` of job events written since the last read."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._last_id: int | None = None

    def new_timings(self) -> list[tuple[str, float]]:
        """(stage, seconds) pairs of events newer than the last call; none on the first call.

        The first call only notes where the event log ends, so a restarted process does not
        replay history into its histograms.
        """
        with self._sessions() as session:
            if self._last_id is None:
                self._last_id = session.scalar(select(func.max(JobEvent.id))) or 0
                return []
            rows = session.execute(
                select(JobEvent.id, JobEvent.details)
                .where(JobEvent.id > self._last_id)
                .order_by(JobEvent.id)
                .limit(FEED_BATCH)
            ).all()
        timings: list[tuple[str, float]] = []
        for event_id, details in rows:
            self._last_id = event_id
            stages = details.get("timings") if isinstance(details, dict) else None
            if isinstance(stages, dict):
                timings.extend(
                    (str(stage), float(seconds))
                    for stage, seconds in stages.items()
                    if isinstance(seconds, int | float)
                )
        return timings


class NodeMetrics:
    """The registry ``/metrics`` renders: histograms plus, given a database, its counts.

    Args:
        sessions: When given, database counts (:class:`DatabaseCollector`) are included and the
            histograms are fed from job events (:class:`TimingFeed`) at each render.
    """

    def __init__(self, sessions: sessionmaker[Session] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            f"{NAMESPACE}_stage_duration_seconds",
            "Duration of a job stage (analyse, deliver, notify, ...)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            f"{NAMESPACE}_model_inference_seconds",
            "Model inference time per study",
            buckets=INFERENCE_BUCKETS,
            registry=self.registry,
        )
        self._feed = TimingFeed(sessions) if sessions is not None else None
        if sessions is not None:
            self.registry.register(DatabaseCollector(sessions))

    def observe_stage(self, stage: str, seconds: float) -> None:
        """Record how long a stage of a job took.

        Raises:
            ValueError: if ``stage`` is not a plain identifier (labels must stay a vocabulary).
        """
        if not stage.isidentifier():
            raise ValueError(f"stage must be an identifier, not {stage!r}")
        self.stage_seconds.labels(stage).observe(seconds)

    def observe_inference(self, seconds: float) -> None:
        """Record one study's model inference time."""
        self.inference_seconds.observe(seconds)

    def render(self) -> bytes:
        """Feed new job-event timings into the histograms; the registry in Prometheus format."""
        if self._feed is not None:
            for stage, seconds in self._feed.new_timings():
                if not stage.isidentifier():
                    LOG.warning("ignoring a timing with a non-identifier stage name")
                    continue
                self.observe_stage(stage, seconds)
                if stage == INFERENCE_STAGE:
                    self.observe_inference(seconds)
        return generate_latest(self.registry)
