"""Study assembly: deciding when a study is complete and turning it into a job.

A study is complete when one of these holds (mercure-style triggers):

* quiet period: no new instance for ``quiet_seconds``;
* early: the association that sent it was released, a short grace has passed with no new
  instance, and the protocol's required series (a sagittal T2) are present;
* forced: an admin asked for it.

A study the node fetched from a source (:mod:`pacs_node.retrieve`) completes by the same
triggers; its job records the trigger ``retrieved`` (or ``prior``) and who asked.

Completion is a compare-and-set on the study row, so an instance arriving at the same moment
reopens the study rather than being lost. A study that already had a job gets a new job
version which supersedes the previous one (late series). The job is enqueued only after the
transaction that created it has committed. A study out of intended use gets a job too, marked
with the reason: the worker sends a report saying why it was not analysed, and the job ends
``skipped``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.config import Settings
from pacs_node.db.base import utcnow
from pacs_node.db.jobs import create_job
from pacs_node.db.retrievals import awaited_retrieval
from pacs_node.db.tables import Series, Study
from pacs_node.domain import (
    CompletionTrigger,
    InstanceOrigin,
    JobState,
    RetrievalPurpose,
    SeriesRole,
    StudyStatus,
)
from pacs_node.errors import StudyIncompleteError
from pacs_node.queue import JobQueue
from pacs_node.selection import SelectionRules, load_rules
from pacs_node.validation import validate_uid

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompletedStudy:
    """What completing a study produced: a queued job, and why it will not be analysed (None
    when it will be)."""

    study_instance_uid: str
    job_id: int
    trigger: CompletionTrigger
    skip_reason: str | None


class StudyAssembler:
    """Checks receiving studies and completes those whose trigger has fired."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        rules: SelectionRules,
        queue: JobQueue,
        *,
        quiet_seconds: float,
        release_grace_seconds: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._rules = rules
        self._queue = queue
        self._quiet = timedelta(seconds=quiet_seconds)
        self._grace = timedelta(seconds=release_grace_seconds)
        self._clock = clock

    @classmethod
    def from_settings(
        cls, settings: Settings, sessions: sessionmaker[Session], queue: JobQueue
    ) -> StudyAssembler:
        """The assembler of a node with ``settings``.

        Raises:
            ConfigError: if the selection rules cannot be loaded.
        """
        return cls(
            sessions,
            load_rules(settings.selection_rules),
            queue,
            quiet_seconds=settings.quiet_seconds,
            release_grace_seconds=settings.release_grace_seconds,
        )

    def force_complete(self, study_instance_uid: str) -> None:
        """Ask for a study to be completed at the next check.

        Raises:
            InvalidIdentifierError: if the UID is malformed.
            StudyIncompleteError: if no such study is receiving.
        """
        validate_uid(study_instance_uid, "Study Instance UID")
        with self._sessions.begin() as session:
            result = session.execute(
                update(Study)
                .where(
                    Study.study_instance_uid == study_instance_uid,
                    Study.status == StudyStatus.RECEIVING.value,
                )
                .values(force_complete=True)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise StudyIncompleteError(f"no receiving study {study_instance_uid}")

    def tick(self) -> list[CompletedStudy]:
        """Complete every study whose trigger has fired; enqueue their jobs after commit."""
        now = self._clock()
        with self._sessions() as session:
            candidates = session.execute(
                select(
                    Study.id, Study.last_received_at, Study.force_complete, Study.last_released_at
                )
                .where(
                    Study.status == StudyStatus.RECEIVING.value,
                    or_(
                        Study.force_complete.is_(True),
                        Study.last_received_at <= now - self._quiet,
                        Study.last_released_at >= Study.last_received_at,
                    ),
                )
                .order_by(Study.last_received_at)
            ).all()
        completed = []
        for study_id, last_received, forced, released in candidates:
            trigger = self._trigger(now, last_received, forced, released)
            if trigger is None:
                continue
            result = self._complete(study_id, last_received, trigger, now)
            if result is not None:
                completed.append(result)
        return completed

    def _trigger(
        self,
        now: datetime,
        last_received: datetime,
        forced: bool,
        released: datetime | None,
    ) -> CompletionTrigger | None:
        if forced:
            return CompletionTrigger.FORCED
        if last_received <= now - self._quiet:
            return CompletionTrigger.QUIET_PERIOD
        if released is not None and released >= last_received and released <= now - self._grace:
            return CompletionTrigger.RELEASED_WITH_PROTOCOL
        return None

    def _complete(
        self,
        study_id: int,
        seen_last_received: datetime,
        trigger: CompletionTrigger,
        now: datetime,
    ) -> CompletedStudy | None:
        with self._sessions() as session:
            series = session.scalars(
                select(Series).where(
                    Series.study_id == study_id, Series.origin == InstanceOrigin.SOURCE.value
                )
            ).all()
            for s in series:
                s.role = self._rules.classify(s.attributes)
            reason = self._rules.not_analysable_reason(
                (s.attributes, SeriesRole(s.role or SeriesRole.OTHER)) for s in series
            )
            if trigger is CompletionTrigger.RELEASED_WITH_PROTOCOL and reason is not None:
                # Early completion only for a study that already has what the protocol needs;
                # otherwise wait for the quiet period (more series may still come).
                return None
            won = session.execute(
                update(Study)
                .where(
                    Study.id == study_id,
                    Study.status == StudyStatus.RECEIVING.value,
                    Study.last_received_at == seen_last_received,
                )
                .values(status=StudyStatus.COMPLETE.value, completed_at=now, force_complete=False)
                .execution_options(synchronize_session=False)
            )
            if won.rowcount != 1:  # type: ignore[attr-defined]
                return None  # a new instance arrived meanwhile; the study stays open
            study_uid = session.scalar(select(Study.study_instance_uid).where(Study.id == study_id))
            assert study_uid is not None
            retrieval = awaited_retrieval(session, study_uid)
            if retrieval is not None:
                trigger = RetrievalPurpose(retrieval.purpose).trigger
            job = create_job(
                session,
                study_id=study_id,
                state=JobState.QUEUED,
                trigger=trigger.value,
                skip_reason=reason,
                requested_by=None if retrieval is None else retrieval.requested_by,
            )
            if retrieval is not None:
                retrieval.job_id = job.id
            job_id = job.id
            session.commit()
        LOG.info(
            "study complete (%s): job %d queued%s",
            trigger.value,
            job_id,
            "" if reason is None else " (not analysed)",
        )
        try:
            self._queue.enqueue(job_id)
        except Exception:
            # The job row is committed and stays queued: the reconciler re-enqueues it.
            LOG.exception("could not enqueue job %d; it stays queued", job_id)
        return CompletedStudy(study_uid, job_id, trigger, reason)
