"""The one Celery app: JSON only, late acks, rejection on worker loss, prefetch 1, gpu/io queues.

The broker only wakes workers; the job rows are the truth (see ``pacs_node.reconciler``). Tasks
take job IDs only and are registered by :func:`worker.tasks.register_tasks`.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from pacs_node.config import Settings
from pacs_node.queue import ANALYSE_TASK, DELIVER_TASK, GPU_QUEUE, IO_QUEUE
from worker.tasks import register_tasks

BROKER_VISIBILITY_TIMEOUT_SECONDS = 6 * 3600
"""An unacknowledged message comes back after this; the reconciler recovers jobs far sooner."""


def create_app(settings: Settings, *, warm_model: bool = False) -> Celery:
    """Build the worker app for a Redis (or other kombu) broker and register the tasks.

    ``warm_model`` loads the model in each worker process right after it starts.

    Raises:
        ValueError: if ``settings`` selects the embedded mode (no broker).
    """
    if settings.embedded:
        raise ValueError("the embedded mode has no broker: run `pacs-node serve` instead")
    app = Celery("pacs_node_worker", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=(Queue(GPU_QUEUE), Queue(IO_QUEUE)),
        task_default_queue=IO_QUEUE,
        task_routes={ANALYSE_TASK: {"queue": GPU_QUEUE}, DELIVER_TASK: {"queue": IO_QUEUE}},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={"visibility_timeout": BROKER_VISIBILITY_TIMEOUT_SECONDS},
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    register_tasks(app, settings, warm_model=warm_model)
    return app
