"""Analyse: take a queued job under a lease, run the model (or report why not), store results.

With priors on, the patient's prior study is found, fetched and analysed first
(:mod:`worker.priors`) and the results say what changed since; a prior's own job keeps its
results and sends them nowhere. A job for a study out of intended use takes the same path with
one result, the SR that says why the study was not analysed, and the model is not loaded for it.
A failed attempt puts the job back in the queue, or ends it ``failed`` once its attempts are used
up (a poison study).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from pacs_node.assembly import StudyAssembler
from pacs_node.config import Settings
from pacs_node.db.leases import claim_job, fail_attempt
from pacs_node.db.node_identity import read_node_identity
from pacs_node.db.study_inputs import StudyInputs, study_inputs
from pacs_node.destinations import Destinations
from pacs_node.domain import CompletionTrigger, ResultKind
from pacs_node.queue import WorkQueue
from pacs_node.results.comparison import PriorReport
from pacs_node.results.identity import DEFAULT_UID_PREFIX, job_result_key
from pacs_node.results.inputs import ResultContext
from pacs_node.spool import Spool
from pacs_node.version import SOFTWARE_VERSION
from worker.lease import LeaseKeeper, LeaseLostError, worker_identity
from worker.pipeline import Predictor, ResultBundle, analyse_study, report_not_analysed
from worker.priors import PriorComparer
from worker.result_store import store_results

LOG = logging.getLogger(__name__)


class LoadedModel:
    """The predictor, loaded on first use and kept for later jobs."""

    def __init__(self, factory: Callable[[], Predictor]) -> None:
        self.factory = factory
        self._predictor: Predictor | None = None
        self._lock = threading.Lock()

    def get(self) -> Predictor:
        """The loaded predictor.

        Raises:
            Exception: whatever loading the model raises.
        """
        with self._lock:
            if self._predictor is None:
                started = time.perf_counter()
                self._predictor = self.factory()
                LOG.info("model loaded in %.1f s", time.perf_counter() - started)
            return self._predictor


class AnalysisStage:
    """The analyse stage of a worker: one database, spool and queue, one loaded model."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        spool: Spool,
        queue: WorkQueue,
        model: LoadedModel,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._spool = spool
        self._queue = queue
        self._model = model
        self._priors = (
            PriorComparer(
                settings,
                sessions,
                spool,
                complete=StudyAssembler.from_settings(settings, sessions, queue).force_complete,
                analyse=self.run,
            )
            if settings.priors
            else None
        )

    def run(self, job_id: int) -> bool:
        """Analyse a queued job; on success its results are stored and delivery is enqueued.

        Returns:
            True when this call produced the job's results; False when the job was not ours to
            run (not queued, taken by another worker) or the attempt failed (then the job is
            queued again, or ``failed`` once out of attempts).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """
        owner, policy = worker_identity(), self._settings.policy
        with self._sessions.begin() as session:
            if not claim_job(session, job_id, owner, policy):
                return False
            inputs = study_inputs(session, job_id)
            context = self._context(session, inputs)
        LOG.info("job %d: analysing", job_id)
        try:
            with LeaseKeeper(self._sessions, job_id, owner, policy):
                prior = None if self._priors is None else self._priors.report_for(job_id, inputs)
                bundle = self._results(inputs, context, prior)
                store_results(
                    self._sessions, self._spool, self._destinations(inputs), job_id, owner, bundle
                )
        except LeaseLostError:
            # Over its time limit or taken over after a stall: the reconciler already counted
            # this attempt and the job's new owner (or its failure) decides what happens next.
            LOG.warning("job %d: lease lost; results of this attempt discarded", job_id)
            return False
        except Exception as exc:
            LOG.exception("job %d: analysis failed", job_id)
            with self._sessions.begin() as session:
                state = fail_attempt(session, job_id, owner, f"{type(exc).__name__}: {exc}", policy)
            if state is not None and not state.terminal:
                self._queue.enqueue(job_id)
            return False
        self._queue.enqueue_delivery(job_id)
        return True

    def _destinations(self, inputs: StudyInputs) -> Destinations:
        """Where the job's results go: nowhere for a prior (fetched to be compared with)."""
        if inputs.trigger == CompletionTrigger.PRIOR:
            return Destinations()
        return self._settings.registry

    def _results(
        self, inputs: StudyInputs, context: ResultContext, prior: PriorReport | None
    ) -> ResultBundle:
        """The model's results (compared with the ``prior`` report, if any) or, for a study out
        of intended use, the report of why not.

        Raises:
            ValueError: if the study lacks a usable SAG_T2 series or its results cannot be
                encoded.
            OSError: if a spool file cannot be read.
            Exception: whatever loading or running the model raises.
        """
        if inputs.skip_reason is not None:
            first = [] if inputs.first_instance is None else [inputs.first_instance]
            return report_not_analysed(
                [self._spool.path_of(p) for p in first],
                inputs.skip_reason,
                context,
                notify=self._settings.hl7_not_analysed,
            )
        files: dict[str, list[Path]] = {
            role.value: [self._spool.path_of(p) for p in paths]
            for role, paths in inputs.series.items()
        }
        key_images = bool(self._destinations(inputs).taking(ResultKind.KEY_IMAGE))
        return analyse_study(files, self._model.get(), context, key_images=key_images, prior=prior)

    def _context(self, session: Session, inputs: StudyInputs) -> ResultContext:
        """Identities keyed by this node, the study and the job version (the pipeline adds the
        model), the job's creation time, the site's settings.

        Raises:
            NodeIdentityMissingError: if the database has no node identity.
        """
        site = self._settings
        node_id = read_node_identity(session).node_id
        return ResultContext(
            job_key=job_result_key(node_id, inputs.study_instance_uid, inputs.version),
            created=inputs.created_at.astimezone(UTC).replace(microsecond=0),
            software_version=SOFTWARE_VERSION,
            institution_name=site.institution_name or None,
            uid_prefix=site.uid_root or DEFAULT_UID_PREFIX,
            hl7=site.hl7_addressing,
        )
