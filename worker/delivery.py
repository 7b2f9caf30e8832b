"""Deliver and notify: send a job's due deliveries, one channel per stage, and advance the job.

``delivering`` sends the DICOM deliveries (C-STORE), ``notifying`` the HL7 one (MLLP); each
sends only what is due (objects not yet delivered, retries whose backoff has passed), through the
sender of each destination's kind (:mod:`pacs_node.dispatch.senders`), and records every attempt
the same way. A stage is complete once nothing of its channel is pending or ``committing``
(stored, waiting for a destination's storage commitment: its report, or the reconciler's
timeout, wakes the job again); a dead-lettered delivery fails the job (retryable by replay).
The job ends ``done``, or ``skipped`` with its reason for a study out of intended use. Every
step is a compare-and-set, so duplicate or late messages do nothing.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pacs_node.config import Settings
from pacs_node.db.deliveries import (
    channel_states,
    claim_delivery,
    count_deliveries,
    due_deliveries,
    record_attempt,
)
from pacs_node.db.jobs import job_state, transition
from pacs_node.db.tables import Job
from pacs_node.destinations import DestinationKind
from pacs_node.dispatch.attempt import Attempt, Sender
from pacs_node.dispatch.commitment import CommitmentLedger
from pacs_node.dispatch.senders import senders
from pacs_node.domain import Channel, CompletionTrigger, DeliveryState, JobState
from pacs_node.spool import Spool

LOG = logging.getLogger(__name__)

STAGE = {Channel.DICOM: "deliver", Channel.HL7: "notify"}
"""The job stage (timing name) that sends each channel."""
NOT_CONFIGURED = {
    Channel.DICOM: "no DICOM destination configured, nothing sent",
    Channel.HL7: "no HL7 endpoint configured, no ORU sent",
}
NOTHING_SENT = "nothing sent: no DICOM destination or HL7 endpoint is configured"
PRIOR_KEPT = "a prior, analysed to be compared with: its results are kept, not sent"
REPLAYABLE = (JobState.FAILED, JobState.DONE, JobState.SKIPPED)
"""Final states an admin replay brings back to a sending stage."""


class DeliveryStage:
    """The deliver and notify stages of a worker, against one database and spool."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        spool: Spool,
        kinds: Mapping[DestinationKind, Sender] | None = None,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._spool = spool
        # Storage commitment reports on the sending association settle here; the stage then
        # advances the job itself. Reports on a new association wake it through the SCP.
        self._senders = kinds or senders(
            calling_ae=settings.ae_title,
            timeout=settings.dimse_timeout,
            uid_root=settings.uid_root,
            commitments=CommitmentLedger(sessions, settings.policy),
        )

    def run(self, job_id: int) -> JobState | None:
        """Send a job's due deliveries, then its notification, advancing its state to ``done``
        (``skipped`` for a study out of intended use).

        Returns:
            The job's state afterwards (None if there is no such job).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
            OSError: if a stored result file cannot be read.
        """
        self._start(job_id)
        if self._state(job_id) is JobState.DELIVERING:
            self._stage(job_id, Channel.DICOM, JobState.DELIVERING, JobState.NOTIFYING, {})
        if self._state(job_id) is JobState.NOTIFYING:
            final, values = self._outcome(job_id)
            self._stage(job_id, Channel.HL7, JobState.NOTIFYING, final, values)
        return self._state(job_id)

    def _state(self, job_id: int) -> JobState | None:
        with self._sessions() as session:
            return job_state(session, job_id)

    def _start(self, job_id: int) -> None:
        """``results_ready`` -> ``delivering``; a replayed ``failed``/``done``/``skipped`` job goes
        back to ``delivering`` (DICOM due) or ``notifying`` (only HL7 due)."""
        with self._sessions.begin() as session:
            state = job_state(session, job_id)
            if state is JobState.RESULTS_READY:
                transition(
                    session, job_id, JobState.RESULTS_READY, JobState.DELIVERING, "delivering"
                )
            elif state in REPLAYABLE:
                if DeliveryState.PENDING in channel_states(session, job_id, Channel.DICOM):
                    target = JobState.DELIVERING
                elif DeliveryState.PENDING in channel_states(session, job_id, Channel.HL7):
                    target = JobState.NOTIFYING
                else:
                    return
                transition(session, job_id, state, target, "replay: deliveries pending")

    def _outcome(self, job_id: int) -> tuple[JobState, dict[str, Any]]:
        """The state a delivered job ends in, with the job columns to set: ``skipped`` with its
        reason for a study out of intended use, else ``done`` (with a reason when nothing was
        sent: a prior's results are kept, or no destination is configured)."""
        with self._sessions() as session:
            job = session.get(Job, job_id)
            skip_reason = None if job is None else job.skip_reason
            prior = job is not None and job.trigger == CompletionTrigger.PRIOR
            sent_nowhere = count_deliveries(session, job_id) == 0
        if skip_reason is not None:
            return JobState.SKIPPED, {"reason": skip_reason}
        if prior:
            return JobState.DONE, {"reason": PRIOR_KEPT}
        return JobState.DONE, {"reason": NOTHING_SENT} if sent_nowhere else {}

    def _stage(
        self,
        job_id: int,
        channel: Channel,
        current: JobState,
        following: JobState,
        values: dict[str, Any],
    ) -> None:
        started = time.perf_counter()
        for name, items in self._claim_due(job_id, channel).items():
            self._send(job_id, name, items)
        self._advance(job_id, channel, current, following, time.perf_counter() - started, values)

    def _claim_due(self, job_id: int, channel: Channel) -> dict[str, list[tuple[int, Path]]]:
        """Claim the due deliveries of a channel, grouped by destination name."""
        claimed: dict[str, list[tuple[int, Path]]] = defaultdict(list)
        with self._sessions.begin() as session:
            due = due_deliveries(session, job_id, channel)
        for delivery, result in due:
            with self._sessions.begin() as session:
                if claim_delivery(session, delivery.id, self._settings.policy):
                    claimed[delivery.destination].append(
                        (delivery.id, self._spool.path_of(result.path))
                    )
        return claimed

    def _send(self, job_id: int, name: str, items: list[tuple[int, Path]]) -> None:
        """Send claimed deliveries to one destination and record each attempt."""
        paths = [path for _, path in items]
        destination = self._settings.registry.named(name)
        if destination is None:  # removed from the settings since the job stored its results
            attempts = [Attempt(False, None, f"destination {name} is not configured")] * len(paths)
        else:
            attempts = self._senders[destination.kind](destination, paths)
        with self._sessions.begin() as session:
            for (delivery_id, _), attempt in zip(items, attempts, strict=True):
                record_attempt(
                    session,
                    delivery_id,
                    delivered=attempt.delivered,
                    status=attempt.status,
                    error=attempt.error,
                    policy=self._settings.policy,
                    commitment_uid=attempt.commitment_uid,
                )
        delivered = sum(a.delivered for a in attempts)
        committing = sum(a.commitment_uid is not None for a in attempts)
        waiting = f" ({committing} awaiting storage commitment)" if committing else ""
        LOG.info(
            "job %d: %d/%d objects delivered to %s%s", job_id, delivered, len(items), name, waiting
        )

    def _advance(
        self,
        job_id: int,
        channel: Channel,
        current: JobState,
        new: JobState,
        seconds: float,
        values: dict[str, Any],
    ) -> None:
        """Move the job on to ``new`` (setting ``values``) once no delivery of ``channel`` is
        pending, or to ``failed`` if one was dead-lettered."""
        stage = STAGE[channel]
        timings = {"timings": {stage: seconds}}
        with self._sessions.begin() as session:
            states = channel_states(session, job_id, channel)
            if states & {DeliveryState.PENDING, DeliveryState.COMMITTING}:
                return  # retries are due later, or a commitment report: either wakes us
            if DeliveryState.DEAD in states:
                attempts = self._settings.policy.delivery_max_attempts
                transition(
                    session,
                    job_id,
                    current,
                    JobState.FAILED,
                    f"{channel.value} delivery dead-lettered",
                    timings,
                    reason=f"{channel.value} delivery failed after {attempts} attempts; "
                    "replay to retry",
                    retryable=True,
                )
                return
            message = f"{stage} complete" if states else f"{stage}: {self._nothing_sent(channel)}"
            transition(session, job_id, current, new, message, timings, **values)

    def _nothing_sent(self, channel: Channel) -> str:
        """Why a channel had no delivery: nothing of the job goes there, or nowhere is set."""
        configured = bool(self._settings.registry.on(channel))
        return "nothing to send" if configured else NOT_CONFIGURED[channel]
