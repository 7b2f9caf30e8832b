"""Job control limits: leases, attempts, requeueing and delivery retries.

One frozen object, set by the ``PACS_NODE_*`` settings of the same names (they are part of
:class:`~pacs_node.config.Settings` as ``settings.policy``) and passed to whatever takes, renews,
expires or retries work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta

from pacs_node.validation import check_limits

_AT_LEAST_ONE = ("max_attempts", "delivery_max_attempts")


@dataclass(frozen=True)
class JobPolicy:
    """Timing and retry limits of job control (seconds unless named otherwise).

    Attributes:
        lease_seconds: How long a claim lasts without renewal; a worker renews it every third.
        max_attempts: Analysis attempts before a job ends ``failed``.
        job_timeout_seconds: A job running longer loses its lease (then counts as an attempt).
        requeue_after_seconds: A ``queued`` job untouched this long gets its message again; a job
            with deliveries due is woken again no sooner than this.
        reconcile_interval_seconds: How often ``serve`` runs the reconciler.
        delivery_max_attempts: Attempts per object and destination before it is dead-lettered.
        delivery_backoff_seconds: First retry delay of a failed delivery; doubles each attempt.
        delivery_backoff_max_seconds: Longest retry delay.
        delivery_attempt_seconds: How long one delivery attempt may hold its object.
        commitment_timeout_seconds: How long a destination flagged ``/commit`` has to report
            storage commitment of a stored object before the attempt counts as failed.
    """

    lease_seconds: float = 60.0
    max_attempts: int = 3
    job_timeout_seconds: float = 1800.0
    requeue_after_seconds: float = 30.0
    reconcile_interval_seconds: float = 5.0
    delivery_max_attempts: int = 16
    delivery_backoff_seconds: float = 30.0
    delivery_backoff_max_seconds: float = 3600.0
    delivery_attempt_seconds: float = 300.0
    commitment_timeout_seconds: float = 300.0

    def __post_init__(self) -> None:
        """Check every limit.

        Raises:
            SettingError: naming the first limit out of range.
        """
        names = [item.name for item in dataclasses.fields(self)]
        check_limits(
            self,
            positive=[n for n in names if n not in _AT_LEAST_ONE],
            at_least=dict.fromkeys(_AT_LEAST_ONE, 1),
        )

    def delivery_backoff(self, attempts: int) -> timedelta:
        """Delay before the next try after ``attempts`` failed tries (exponential, capped)."""
        seconds = self.delivery_backoff_seconds * 2 ** max(attempts - 1, 0)
        return timedelta(seconds=min(seconds, self.delivery_backoff_max_seconds))


POLICY_NAMES: tuple[str, ...] = tuple(item.name for item in dataclasses.fields(JobPolicy))
