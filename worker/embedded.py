"""Embedded mode: the same job steps in threads of the ``serve`` process, no broker.

``pacs-node serve`` with ``PACS_NODE_BROKER_URL=embedded`` loads this module by name and uses
:class:`EmbeddedWorker` as its work queue: one thread runs analyses (the ``gpu`` queue), one runs
deliveries (the ``io`` queue). Jobs follow the same state machine, leases and retries as with
Celery; the reconciler recovers anything lost if the process dies. The model is loaded by the
first analysis (on the thread that runs them), so a node that only receives never holds it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from models.paths import DEFAULT_CHECKPOINT
from pacs_node.checks import check_checkpoint
from pacs_node.config import Settings
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.spool import Spool
from worker.runner import JobRunner
from worker.tasks import check_device, load_predictor

LOG = logging.getLogger(__name__)

_STOP = -1


class EmbeddedWorker:
    """In-process queues and worker threads; implements ``pacs_node.queue.WorkQueue``."""

    def __init__(self, settings: Settings) -> None:
        self._engine = make_engine(settings.database_url)
        self.runner = JobRunner(
            settings=settings,
            sessions=make_session_factory(self._engine),
            spool=Spool(settings.spool_dir),
            queue=self,
            predictor_factory=lambda: load_predictor(settings, warm_up=False),
        )
        self._analyse: queue.Queue[int] = queue.Queue()
        self._deliver: queue.Queue[int] = queue.Queue()
        self._threads = [
            threading.Thread(
                target=self._loop,
                args=(self._analyse, self.runner.analyse),
                name="gpu",
                daemon=True,
            ),
            threading.Thread(
                target=self._loop, args=(self._deliver, self.runner.deliver), name="io", daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()

    def enqueue(self, job_id: int) -> None:
        """Queue an analysis."""
        self._analyse.put(job_id)

    def enqueue_delivery(self, job_id: int) -> None:
        """Queue a delivery."""
        self._deliver.put(job_id)

    @staticmethod
    def _loop(items: queue.Queue[int], step: Callable[[int], object]) -> None:
        while (job_id := items.get()) != _STOP:
            try:
                step(job_id)
            except Exception:
                LOG.exception("job %d: step failed; the reconciler will retry it", job_id)

    def stop(self) -> None:
        """Finish the current steps and stop the threads (queued IDs stay queued in the DB)."""
        self._analyse.put(_STOP)
        self._deliver.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=60)
        self._engine.dispose()


def start(settings: Settings) -> EmbeddedWorker:
    """Check the model checkpoint (the configured one, else the shipped one) and the device,
    start the threads.

    Raises:
        StartupError: if the checkpoint cannot be read or the device is not on this host.
        sqlalchemy.exc.ArgumentError: if the database URL is malformed.
    """
    check_checkpoint(settings.model or DEFAULT_CHECKPOINT)
    check_device(settings.device)
    return EmbeddedWorker(settings)
