"""Priors: before a job analyses its study, find the patient's prior lumbar MRI on the source,
fetch and analyse it if the node has no report of it yet, and hand its report to the analysis.

The prior becomes a job of its own (trigger ``prior``) that keeps its results and sends them
nowhere; the current job records which prior job it was compared with. Nothing here fails the
current job: a source that is down, no prior, or a prior that cannot be analysed in time only
means no comparison, and the job's timeline says why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import pydicom
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.config import Settings
from pacs_node.db.jobs import add_event, job_state
from pacs_node.db.results import analysed_report
from pacs_node.db.retrievals import get_retrieval
from pacs_node.db.study_inputs import StudyInputs
from pacs_node.db.tables import Job
from pacs_node.domain import CompletionTrigger, JobState, RetrievalPurpose
from pacs_node.results.comparison import PriorReport, read_prior_report
from pacs_node.retrieve.priors import CurrentStudy, find_prior
from pacs_node.retrieve.retriever import Retriever
from pacs_node.retrieve.scu import SourceUnavailableError
from pacs_node.sources import Source
from pacs_node.spool import Spool

LOG = logging.getLogger(__name__)

PRIOR_WAIT_SECONDS = 600.0
"""How long a job waits for its prior's job to be created and analysed (by the serving process's
assembly, then by itself or another worker) before it goes on without a comparison."""
POLL_SECONDS = 0.5
T = TypeVar("T")


class PriorComparer:
    """Finds, fetches and analyses the prior of a job's study."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        spool: Spool,
        *,
        complete: Callable[[str], None],
        analyse: Callable[[int], bool],
        wait_seconds: float = PRIOR_WAIT_SECONDS,
    ) -> None:
        """``complete`` asks for a fetched study's completion (``StudyAssembler.force_complete``);
        ``analyse`` runs a queued job here and now (``AnalysisStage.run``)."""
        self._settings = settings
        self._sessions = sessions
        self._spool = spool
        self._retriever = Retriever(settings, sessions, spool, complete)
        self._analyse = analyse
        self._wait_seconds = wait_seconds

    def report_for(self, job_id: int, inputs: StudyInputs) -> PriorReport | None:
        """The report of the job's prior study, or None (then the timeline says why).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """
        source = self._settings.prior_source
        if (
            source is None
            or inputs.skip_reason is not None
            or inputs.trigger == CompletionTrigger.PRIOR
            or inputs.first_instance is None
        ):
            return None
        current = self._current(inputs.first_instance)
        if current is None:
            self._note(job_id, "prior: the study has no Patient ID; no prior looked for")
            return None
        try:
            match = find_prior(
                partial(self._retriever.find, source),
                current,
                self._settings.prior_lookback_days,
            )
        except SourceUnavailableError as exc:
            self._note(job_id, f"prior: search failed ({exc}); analysed without comparison")
            return None
        if match is None:
            days = self._settings.prior_lookback_days
            self._note(job_id, f"prior: none on {source.name} within {days} days")
            return None
        held = self._report_of(job_id, source, match.study_instance_uid)
        if held is None:
            return None
        prior_job_id, sr_path = held
        try:
            report = read_prior_report(self._spool.path_of(sr_path))
        except (OSError, ValueError) as exc:
            self._note(job_id, f"prior: the report of job {prior_job_id} is unreadable ({exc})")
            return None
        with self._sessions.begin() as session:
            session.execute(update(Job).where(Job.id == job_id).values(prior_job_id=prior_job_id))
            job = session.get(Job, job_id)
            if job is not None:
                add_event(session, job, f"prior: compared with job {prior_job_id}")
        return report

    def _current(self, first_instance: str) -> CurrentStudy | None:
        header = pydicom.dcmread(self._spool.path_of(first_instance), stop_before_pixels=True)
        patient_id = str(header.get("PatientID", "") or "").strip()
        if not patient_id:
            return None
        return CurrentStudy(
            study_instance_uid=str(header.StudyInstanceUID),
            patient_id=patient_id,
            study_date=str(header.get("StudyDate", "") or ""),
            study_time=str(header.get("StudyTime", "") or ""),
        )

    def _report_of(self, job_id: int, source: Source, study_uid: str) -> tuple[int, str] | None:
        """(prior job id, SR path) of the prior study: the node's report if it has one, else the
        report of the prior fetched and analysed now."""
        with self._sessions() as session:
            held = analysed_report(session, study_uid)
        if held is not None:
            return held
        fetched = self._retriever.fetch(
            source, study_uid, RetrievalPurpose.PRIOR, f"job:{job_id}", for_job_id=job_id
        )
        if fetched.outcome.error is not None and not fetched.outcome.completed:
            self._note(job_id, f"prior: retrieval {fetched.retrieval_id} failed")
            return None
        prior_job_id = fetched.job_id or self._until(lambda: self._job_of(fetched.retrieval_id))
        if prior_job_id is None:
            self._note(job_id, f"prior: retrieval {fetched.retrieval_id} made no job in time")
            return None
        self._note(job_id, f"prior: fetched as job {prior_job_id}; analysing it first")
        self._analyse(prior_job_id)  # a no-op when another worker has it

        def report_or_end() -> tuple[int, str] | None:
            with self._sessions() as session:
                report = analysed_report(session, study_uid)
                state = job_state(session, prior_job_id)
            if report is None and state is not None and state.terminal:
                raise _PriorEndedError(state)
            return report

        try:
            report = self._until(report_or_end)
        except _PriorEndedError as ended:
            self._note(job_id, f"prior: job {prior_job_id} ended {ended.state} without a report")
            return None
        if report is None:
            self._note(job_id, f"prior: job {prior_job_id} gave no report in time")
        return report

    def _job_of(self, retrieval_id: int) -> int | None:
        with self._sessions() as session:
            info = get_retrieval(session, retrieval_id)
        return None if info is None else info.job_id

    def _until(self, probe: Callable[[], T | None]) -> T | None:
        """Poll ``probe`` until it gives a value or the wait is over."""
        deadline = time.monotonic() + self._wait_seconds
        while (value := probe()) is None and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        return value

    def _note(self, job_id: int, message: str) -> None:
        """Add a line to the job's timeline (and the log: job ids only, never UIDs)."""
        LOG.info("job %d: %s", job_id, message)
        with self._sessions.begin() as session:
            job = session.get(Job, job_id)
            if job is not None:
                add_event(session, job, message)


class _PriorEndedError(Exception):
    def __init__(self, state: JobState) -> None:
        super().__init__(state.value)
        self.state = state
