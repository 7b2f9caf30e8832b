"""The job steps a worker runs, shared by the Celery tasks and the embedded mode.

:meth:`JobRunner.analyse` takes a queued job under a lease, runs the pipeline, stores the encoded
results with their deterministic identities and creates their deliveries, all before anything is
sent. :meth:`JobRunner.deliver` sends due DICOM deliveries (only the objects not yet stored), then
the HL7 notification, moving the job through ``delivering`` and ``notifying`` to ``done``. A job
for a study out of intended use takes the same path with one result, the SR that says why the
study was not analysed (the model is not loaded for it), and ends ``skipped`` with its reason.
Every step is a compare-and-set, so duplicate or late messages do nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.config import Destination, Settings
from pacs_node.db.base import utcnow
from pacs_node.db.jobs import transition
from pacs_node.db.leases import JobPolicy, claim_job, fail_attempt, finish_running, renew_lease
from pacs_node.db.node_identity import read_node_identity
from pacs_node.db.tables import Delivery, Instance, Job, Result, Series, Study
from pacs_node.dispatch.ledger import (
    Channel,
    DeliveryState,
    channel_states,
    claim_delivery,
    create_deliveries,
    due_deliveries,
    record_attempt,
)
from pacs_node.dispatch.scu import send_files
from pacs_node.domain import InstanceOrigin, JobState
from pacs_node.hl7.mllp import send_message
from pacs_node.queue import WorkQueue
from pacs_node.results.identity import DEFAULT_UID_PREFIX, job_result_key
from pacs_node.results.inputs import AlgorithmInfo, ResultContext
from pacs_node.spool import Spool, atomic_write
from pacs_node.version import SOFTWARE_VERSION
from worker.pipeline import (
    MODEL_ROLES,
    EncodedResult,
    Predictor,
    ResultBundle,
    analyse_study,
    report_not_analysed,
)

LOG = logging.getLogger(__name__)

RESULTS_FOLDER = "results"
NOT_CONFIGURED = {
    Channel.DICOM: "no DICOM destination configured, nothing sent",
    Channel.HL7: "no HL7 endpoint configured, no ORU sent",
}
NOTHING_SENT = "nothing sent: no DICOM destination or HL7 endpoint is configured"


class LeaseLostError(Exception):
    """The worker no longer holds the job it was running."""


def worker_identity() -> str:
    """This thread's lease owner name: host, process and thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class LeaseKeeper:
    """Renews a job's lease in the background until stopped or the job's time limit is reached.

    Past the time limit the lease is left to expire, so the reconciler ends the attempt even if
    the model hangs.
    """

    def __init__(
        self, sessions: sessionmaker[Session], job_id: int, owner: str, policy: JobPolicy
    ) -> None:
        self._sessions = sessions
        self._job_id = job_id
        self._owner = owner
        self._policy = policy
        self._deadline = time.monotonic() + policy.job_timeout_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        interval = self._policy.lease_seconds / 3
        while not self._stop.wait(interval) and time.monotonic() < self._deadline:
            until = utcnow() + timedelta(seconds=self._policy.lease_seconds)
            try:
                with self._sessions.begin() as session:
                    held = renew_lease(session, self._job_id, self._owner, until)
            except Exception:
                LOG.exception("job %d: could not renew the lease", self._job_id)
                continue
            if not held:
                LOG.warning("job %d: lease lost", self._job_id)
                return


@dataclass
class JobRunner:
    """Runs job steps against one database, spool and queue, with a lazily loaded predictor."""

    settings: Settings
    policy: JobPolicy
    sessions: sessionmaker[Session]
    spool: Spool
    queue: WorkQueue
    predictor_factory: Callable[[], Predictor]
    _predictor: Predictor | None = None
    _predictor_lock: threading.Lock = field(default_factory=threading.Lock)

    def predictor(self) -> Predictor:
        """The model, loaded on first use and kept for later jobs.

        Raises:
            Exception: whatever loading the model raises.
        """
        with self._predictor_lock:
            if self._predictor is None:
                started = time.perf_counter()
                self._predictor = self.predictor_factory()
                LOG.info("model loaded in %.1f s", time.perf_counter() - started)
            return self._predictor

    # --- analysis ----------------------------------------------------------------------------

    def analyse(self, job_id: int) -> bool:
        """Analyse a queued job; on success its results are stored and delivery is enqueued.

        Returns:
            True when this call produced the job's results; False when the job was not ours to
            run (not queued, taken by another worker) or the attempt failed (then the job is
            queued again, or ``failed`` once out of attempts).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """
        owner = worker_identity()
        with self.sessions.begin() as session:
            if not claim_job(session, job_id, owner, self.policy):
                return False
            work = self._work(session, job_id)
        LOG.info("job %d: analysing", job_id)
        try:
            with LeaseKeeper(self.sessions, job_id, owner, self.policy):
                self._store(job_id, owner, work())
        except LeaseLostError:
            # Over its time limit or taken over after a stall: the reconciler already counted
            # this attempt and the job's new owner (or its failure) decides what happens next.
            LOG.warning("job %d: lease lost; results of this attempt discarded", job_id)
            return False
        except Exception as exc:
            LOG.exception("job %d: analysis failed", job_id)
            with self.sessions.begin() as session:
                state = fail_attempt(
                    session, job_id, owner, f"{type(exc).__name__}: {exc}", self.policy
                )
            if state is not None and not state.terminal:
                self.queue.enqueue(job_id)
            return False
        self.queue.enqueue_delivery(job_id)
        return True

    def _work(self, session: Session, job_id: int) -> Callable[[], ResultBundle]:
        """What analysing a claimed job means: the model on its series or, for a study out of
        intended use, the report that says why it is not analysed."""
        context = self._context(session, job_id)
        skip_reason = session.scalar(select(Job.skip_reason).where(Job.id == job_id))
        if skip_reason is not None:
            return partial(
                report_not_analysed,
                self._first_instance(session, job_id),
                skip_reason,
                context,
                notify=self.settings.hl7_not_analysed,
            )
        return partial(self._run_model, self._series_files(session, job_id), context)

    def _run_model(
        self, series_files: dict[str, list[Path]], context: ResultContext
    ) -> ResultBundle:
        """Analyse a study with the model (loaded on first use).

        Raises:
            ValueError: if the study lacks a usable SAG_T2 series or its results cannot be
                encoded.
            OSError: if a spool file cannot be read.
            Exception: whatever loading or running the model raises.
        """
        return analyse_study(
            series_files,
            self.predictor(),
            context,
            key_images=any(d.key_images for d in self.settings.destinations),
        )

    def _first_instance(self, session: Session, job_id: int) -> list[Path]:
        """The spool file of the study's first received source image (none if it has none)."""
        paths = session.scalars(
            select(Instance.path)
            .join(Series, Series.id == Instance.series_id)
            .join(Job, Job.study_id == Series.study_id)
            .where(Job.id == job_id, Series.origin == InstanceOrigin.SOURCE.value)
            .order_by(Instance.id)
            .limit(1)
        )
        return [self.spool.path_of(p) for p in paths]

    def _series_files(self, session: Session, job_id: int) -> dict[str, list[Path]]:
        study_id = session.scalar(select(Job.study_id).where(Job.id == job_id))
        counts = (
            select(Series.id, Series.role, func.count(Instance.id).label("n"))
            .join(Instance, Instance.series_id == Series.id)
            .where(Series.study_id == study_id, Series.role.in_(MODEL_ROLES))
            .group_by(Series.id, Series.role)
            .order_by(func.count(Instance.id).desc(), Series.id)
        )
        chosen: dict[str, int] = {}
        for series_id, role, _ in session.execute(counts):
            chosen.setdefault(str(role), series_id)
        files: dict[str, list[Path]] = {}
        for role, series_id in chosen.items():
            paths = session.scalars(select(Instance.path).where(Instance.series_id == series_id))
            files[role] = [self.spool.path_of(p) for p in paths]
        return files

    def _context(self, session: Session, job_id: int) -> ResultContext:
        """The job's result context: identities keyed by this node, the study and the job
        version (the pipeline adds the model), the job's creation time, the site's settings."""
        study_uid, version, created = session.execute(
            select(Study.study_instance_uid, Job.version, Job.created_at)
            .join(Study, Study.id == Job.study_id)
            .where(Job.id == job_id)
        ).one()
        site = self.settings
        return ResultContext(
            job_key=job_result_key(read_node_identity(session).node_id, study_uid, version),
            created=created.astimezone(UTC).replace(microsecond=0),
            software_version=SOFTWARE_VERSION,
            institution_name=site.institution_name or None,
            uid_prefix=site.uid_root or DEFAULT_UID_PREFIX,
            hl7=site.hl7_addressing,
        )

    def _store(self, job_id: int, owner: str, bundle: ResultBundle) -> None:
        """Write the encoded results and their rows; the job becomes ``results_ready``.

        Raises:
            LeaseLostError: if ``owner`` no longer holds the job (nothing is recorded).
        """
        folder = f"{RESULTS_FOLDER}/job-{job_id}"
        written = []
        for result in bundle.results:
            relative = f"{folder}/{_file_name(result)}"
            atomic_write(self.spool.path_of(relative), result.data)
            written.append((result, relative))
        with self.sessions.begin() as session:
            rows = [_result_row(job_id, result, relative) for result, relative in written]
            session.add_all(rows)
            session.flush()
            create_deliveries(
                session,
                job_id,
                rows,
                self.settings.destinations,
                None
                if self.settings.hl7_endpoint is None
                else f"{self.settings.hl7_endpoint.host}:{self.settings.hl7_endpoint.port}",
            )
            done = finish_running(
                session,
                job_id,
                owner,
                JobState.RESULTS_READY,
                f"results stored: {', '.join(r.kind for r in bundle.results)}",
                details={"timings": bundle.timings},
                **_model_columns(bundle.algorithm),
            )
            if not done:
                raise LeaseLostError(f"job {job_id} is no longer leased to {owner}")

    # --- delivery and notification ------------------------------------------------------------

    def deliver(self, job_id: int) -> JobState | None:
        """Send a job's due deliveries, then its notification, advancing its state to ``done``
        (``skipped`` for a study out of intended use).

        Returns:
            The job's state afterwards (None if there is no such job).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
            OSError: if a stored result file cannot be read.
        """
        self._start_delivery(job_id)
        if self._state(job_id) is JobState.DELIVERING:
            started = time.perf_counter()
            self._send_dicom(job_id)
            self._advance(job_id, Channel.DICOM, JobState.DELIVERING, JobState.NOTIFYING, started)
        if self._state(job_id) is JobState.NOTIFYING:
            started = time.perf_counter()
            self._send_hl7(job_id)
            outcome, values = self._outcome(job_id)
            self._advance(job_id, Channel.HL7, JobState.NOTIFYING, outcome, started, **values)
        return self._state(job_id)

    def _outcome(self, job_id: int) -> tuple[JobState, dict[str, Any]]:
        """The state a delivered job ends in, with the job columns to set: ``skipped`` with its
        reason for a study out of intended use, else ``done`` (with a reason when nothing was
        sent because no destination is configured)."""
        with self.sessions() as session:
            skip_reason = session.scalar(select(Job.skip_reason).where(Job.id == job_id))
            sent_nowhere = not session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.job_id == job_id)
            )
        if skip_reason is not None:
            return JobState.SKIPPED, {"reason": skip_reason}
        return JobState.DONE, {"reason": NOTHING_SENT} if sent_nowhere else {}

    def _start_delivery(self, job_id: int) -> None:
        """``results_ready`` -> ``delivering``; a replayed ``failed``/``done``/``skipped`` job goes
        back to ``delivering`` (DICOM due) or ``notifying`` (only HL7 due)."""
        with self.sessions.begin() as session:
            state = session.scalar(select(Job.state).where(Job.id == job_id))
            if state == JobState.RESULTS_READY:
                transition(
                    session, job_id, JobState.RESULTS_READY, JobState.DELIVERING, "delivering"
                )
            elif state in (JobState.FAILED, JobState.DONE, JobState.SKIPPED):
                if DeliveryState.PENDING in channel_states(session, job_id, Channel.DICOM):
                    target = JobState.DELIVERING
                elif DeliveryState.PENDING in channel_states(session, job_id, Channel.HL7):
                    target = JobState.NOTIFYING
                else:
                    return
                transition(session, job_id, JobState(state), target, "replay: deliveries pending")

    def _state(self, job_id: int) -> JobState | None:
        with self.sessions() as session:
            state = session.scalar(select(Job.state).where(Job.id == job_id))
        return None if state is None else JobState(state)

    def _claim_due(self, job_id: int, channel: Channel) -> dict[str, list[tuple[int, Path]]]:
        """Claim the due deliveries of a channel, grouped by destination."""
        claimed: dict[str, list[tuple[int, Path]]] = defaultdict(list)
        with self.sessions.begin() as session:
            due = due_deliveries(session, job_id, channel)
        for delivery, result in due:
            with self.sessions.begin() as session:
                if claim_delivery(session, delivery.id, self.policy):
                    claimed[delivery.destination].append(
                        (delivery.id, self.spool.path_of(result.path))
                    )
        return claimed

    def _send_dicom(self, job_id: int) -> None:
        for destination, items in self._claim_due(job_id, Channel.DICOM).items():
            outcomes = send_files(
                Destination.parse(destination),
                [path for _, path in items],
                calling_ae=self.settings.ae_title,
                timeout=self.settings.dimse_timeout,
            )
            with self.sessions.begin() as session:
                for (delivery_id, _), outcome in zip(items, outcomes, strict=True):
                    record_attempt(
                        session,
                        delivery_id,
                        delivered=outcome.stored,
                        status=outcome.status,
                        error=outcome.error,
                        policy=self.policy,
                    )
            LOG.info(
                "job %d: %d/%d objects stored at %s",
                job_id,
                sum(o.stored for o in outcomes),
                len(outcomes),
                destination,
            )

    def _send_hl7(self, job_id: int) -> None:
        for destination, items in self._claim_due(job_id, Channel.HL7).items():
            host, port = destination.rsplit(":", 1)
            for delivery_id, path in items:
                outcome = send_message(host, int(port), path.read_bytes())
                with self.sessions.begin() as session:
                    record_attempt(
                        session,
                        delivery_id,
                        delivered=outcome.accepted,
                        status=outcome.code,
                        error=outcome.error,
                        policy=self.policy,
                    )
                LOG.info("job %d: HL7 to %s: %s", job_id, destination, outcome)

    def _nothing_sent(self, channel: Channel) -> str:
        """Why a channel had no delivery: nothing of the job goes there, or nowhere is set."""
        if channel is Channel.DICOM:
            configured = bool(self.settings.destinations)
        else:
            configured = self.settings.hl7_endpoint is not None
        return "nothing to send" if configured else NOT_CONFIGURED[channel]

    def _advance(
        self,
        job_id: int,
        channel: Channel,
        current: JobState,
        new: JobState,
        started: float,
        **values: Any,
    ) -> None:
        """Move the job on to ``new`` (setting ``values``) once no delivery of ``channel`` is
        pending, or to ``failed`` if one was dead-lettered."""
        seconds = time.perf_counter() - started
        stage = "deliver" if channel is Channel.DICOM else "notify"
        with self.sessions.begin() as session:
            states = channel_states(session, job_id, channel)
            if DeliveryState.PENDING in states:
                return  # retries are due later; the reconciler wakes us
            if DeliveryState.DEAD in states:
                transition(
                    session,
                    job_id,
                    current,
                    JobState.FAILED,
                    f"{channel.value} delivery dead-lettered",
                    {"timings": {stage: seconds}},
                    reason=f"{channel.value} delivery failed after "
                    f"{self.policy.delivery_max_attempts} attempts; replay to retry",
                    retryable=True,
                )
                return
            transition(
                session,
                job_id,
                current,
                new,
                f"{stage} complete" if states else f"{stage}: {self._nothing_sent(channel)}",
                {"timings": {stage: seconds}},
                **values,
            )


def _model_columns(algorithm: AlgorithmInfo | None) -> dict[str, str]:
    """The job columns that identify the model (none when no model ran)."""
    if algorithm is None:
        return {}
    return {
        "model_name": algorithm.name[:64],
        "config_hash": algorithm.config_hash[:64],
        "checkpoint_sha256": algorithm.checkpoint_sha256[:64],
    }


def _file_name(result: EncodedResult) -> str:
    if result.kind == "oru":
        return f"oru-{result.control_id}.hl7"
    return f"{result.kind}-{result.sop_instance_uid}.dcm"


def _result_row(job_id: int, result: EncodedResult, relative: str) -> Result:
    return Result(
        job_id=job_id,
        kind=result.kind,
        sop_class_uid=result.sop_class_uid,
        series_instance_uid=result.series_instance_uid,
        sop_instance_uid=result.sop_instance_uid,
        control_id=result.control_id,
        path=relative,
        sha256=hashlib.sha256(result.data).hexdigest(),
        size_bytes=len(result.data),
    )
