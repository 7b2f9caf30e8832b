"""Hand-off of queued jobs to workers, by task name, only after the job row is committed.

The node never imports the worker package: it sends a message naming the task. The broker only
wakes workers; the job row is the truth, so a lost message is recovered by re-enqueueing.
"""

from __future__ import annotations

import logging
from typing import Protocol

from celery import Celery

LOG = logging.getLogger(__name__)

ANALYSE_TASK = "worker.tasks.analyse_study"
DELIVER_TASK = "worker.tasks.deliver_results"
GPU_QUEUE = "gpu"
IO_QUEUE = "io"


class JobQueue(Protocol):
    """Something that wakes a worker for a committed job."""

    def enqueue(self, job_id: int) -> None:
        """Ask a worker to process ``job_id``."""


class WorkQueue(JobQueue, Protocol):
    """A job queue that also wakes delivery (and notification) workers."""

    def enqueue_delivery(self, job_id: int) -> None:
        """Ask an ``io`` worker to deliver ``job_id``'s due results."""


class CeleryJobQueue:
    """Sends ``analyse_study(job_id)`` to the ``gpu`` queue and ``deliver_results(job_id)`` to
    the ``io`` queue of a Celery broker (Redis)."""

    def __init__(self, broker_url: str) -> None:
        # A producer only: the worker side is configured in worker/celery_app.py.
        self._app = Celery("pacs_node.producer", broker=broker_url, set_as_current=False)
        self._app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            broker_connection_retry_on_startup=True,
            # A broker that is down must not stall assembly: the job stays queued in the
            # database and the reconciler sends its message again.
            task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 1},
        )

    def enqueue(self, job_id: int) -> None:
        """Publish the task message.

        Raises:
            kombu.exceptions.OperationalError: if the broker cannot be reached.
        """
        self._app.send_task(ANALYSE_TASK, args=[job_id], queue=GPU_QUEUE)
        LOG.info("job %d enqueued", job_id)

    def enqueue_delivery(self, job_id: int) -> None:
        """Publish a delivery task message.

        Raises:
            kombu.exceptions.OperationalError: if the broker cannot be reached.
        """
        self._app.send_task(DELIVER_TASK, args=[job_id], queue=IO_QUEUE)
        LOG.info("job %d: delivery enqueued", job_id)

    def close(self) -> None:
        """Release broker connections."""
        self._app.close()
