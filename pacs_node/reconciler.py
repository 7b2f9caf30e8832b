"""The reconciler: the database is the truth, so it re-sends whatever the broker may have lost.

Each :meth:`Reconciler.tick` (run periodically by ``serve``):

* returns running jobs whose lease expired (worker killed, job over its time limit) to ``queued``,
  or to ``failed`` once their attempts are used up, and enqueues the requeued ones;
* enqueues again ``queued`` jobs untouched for ``requeue_after_seconds`` (a lost message, a broker
  restarted without persistence);
* wakes delivery for jobs whose deliveries are due (retries after backoff, a lost delivery
  message, an admin replay), for ``results_ready`` jobs whose delivery message was lost, and for
  ``delivering`` jobs with nothing left pending or ``committing`` (a storage commitment report
  whose wake-up was lost);
* fails the attempts whose storage commitment a destination did not report within
  ``commitment_timeout_seconds`` (retried after the backoff, dead after the limit) and wakes their
  jobs.

Duplicate messages are harmless: every worker step is a compare-and-set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.db.base import utcnow
from pacs_node.db.deliveries import expire_commitments
from pacs_node.db.leases import expire_leases
from pacs_node.db.tables import Delivery, Job
from pacs_node.domain import DeliveryState, JobState
from pacs_node.policy import JobPolicy
from pacs_node.queue import WorkQueue

LOG = logging.getLogger(__name__)

DELIVERY_STATES = (
    JobState.RESULTS_READY,
    JobState.DELIVERING,
    JobState.NOTIFYING,
    # An admin replay makes deliveries of a finished job pending again.
    JobState.FAILED,
    JobState.DONE,
    JobState.SKIPPED,
)


@dataclass(frozen=True)
class ReconcileReport:
    """What one tick did (job IDs)."""

    expired: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    delivery_woken: list[int] = field(default_factory=list)
    commitments_expired: list[int] = field(default_factory=list)


class Reconciler:
    """Re-enqueues work the broker may have lost, from the state in the database."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        queue: WorkQueue,
        policy: JobPolicy,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._queue = queue
        self._policy = policy
        self._clock = clock

    def tick(self) -> ReconcileReport:
        """Run one pass; messages are sent only after the database changes are committed.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """
        now = self._clock()
        stale = now - timedelta(seconds=self._policy.requeue_after_seconds)
        with self._sessions.begin() as session:
            expired = expire_leases(session, self._policy, now)
            requeued = self._touch(session, self._stale_queued(session, stale, expired), now)
            uncommitted = expire_commitments(session, self._policy, now)
            due = self._delivery_due(session, stale, now)
            woken = self._touch(session, sorted({*due, *uncommitted}), now)
        report = ReconcileReport(expired, requeued, woken, uncommitted)
        for job_id in [*expired, *requeued]:
            self._send(self._queue.enqueue, job_id)
        for job_id in woken:
            self._send(self._queue.enqueue_delivery, job_id)
        if expired or requeued or woken:
            LOG.info("reconciler: %s", report)
        return report

    @staticmethod
    def _stale_queued(session: Session, stale: datetime, skip: list[int]) -> list[int]:
        rows = session.scalars(
            select(Job.id).where(Job.state == JobState.QUEUED.value, Job.updated_at <= stale)
        )
        return [job_id for job_id in rows if job_id not in skip]

    @staticmethod
    def _delivery_due(session: Session, stale: datetime, now: datetime) -> list[int]:
        due = (
            select(Delivery.job_id)
            .where(
                Delivery.state == DeliveryState.PENDING.value,
                or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
            )
            .distinct()
        )
        unsettled = select(Delivery.job_id).where(
            Delivery.state.in_([DeliveryState.PENDING.value, DeliveryState.COMMITTING.value])
        )
        settled = and_(Job.state == JobState.DELIVERING.value, Job.id.not_in(unsettled))
        rows = session.scalars(
            select(Job.id).where(
                Job.state.in_([s.value for s in DELIVERY_STATES]),
                Job.updated_at <= stale,
                or_(Job.id.in_(due), Job.state == JobState.RESULTS_READY.value, settled),
            )
        )
        return list(rows)

    @staticmethod
    def _touch(session: Session, job_ids: list[int], now: datetime) -> list[int]:
        """Mark jobs as just woken so the next ticks leave them alone for a while."""
        if job_ids:
            session.execute(
                update(Job)
                .where(Job.id.in_(job_ids))
                .values(updated_at=now)
                .execution_options(synchronize_session=False)
            )
        return job_ids

    @staticmethod
    def _send(enqueue: Callable[[int], None], job_id: int) -> None:
        try:
            enqueue(job_id)
        except Exception:
            # The broker is down: the row is unchanged in meaning; the next tick tries again.
            LOG.exception("could not enqueue job %d", job_id)
