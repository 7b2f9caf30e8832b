"""The edge service: SCP, study assembly, reconciler and admin API (``pacs-node serve``).

In embedded mode (``broker_url == "embedded"``) the worker runs in this process: the caller (the
``pacs-node`` command, :mod:`worker.main`) passes the function that starts it, so this package
never imports the worker or the ML stack.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Engine

from pacs_node.api.app import create_app
from pacs_node.api.server import ApiServer
from pacs_node.assembly import StudyAssembler
from pacs_node.checks import check_startup
from pacs_node.config import Settings
from pacs_node.db.ledger import InstanceLedger
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.dispatch.commitment import CommitmentLedger
from pacs_node.errors import StartupError
from pacs_node.instance_store import InstanceStore
from pacs_node.queue import CeleryJobQueue, WorkQueue
from pacs_node.reconciler import Reconciler
from pacs_node.scp.server import RunningSCP, start_scp
from pacs_node.scp_processes import ScpProcesses
from pacs_node.spool import Spool

LOG = logging.getLogger(__name__)

ASSEMBLY_INTERVAL_SECONDS = 1.0


class ServiceQueue(WorkQueue, Protocol):
    """The work queue a running service owns and stops."""

    def stop(self) -> None:
        """Release the queue (stop worker threads, close broker connections)."""


class DeferredQueue:
    """Embedded mode, outside ``serve`` (CLI commands): the serving process's reconciler sends
    queued work to its in-process worker, so there is nothing to wake here."""

    def enqueue(self, job_id: int) -> None:
        """Leave the job queued in the database."""
        LOG.info("job %d queued; the serving process picks it up", job_id)

    def enqueue_delivery(self, job_id: int) -> None:
        """Leave the deliveries due in the database."""
        LOG.info("job %d: delivery due; the serving process picks it up", job_id)

    def stop(self) -> None:
        """Nothing to release."""


class _CeleryQueue(CeleryJobQueue):
    def stop(self) -> None:
        self.close()


def make_queue(settings: Settings) -> ServiceQueue:
    """A producer for commands that enqueue work (CLI, API): Celery, or deferred when embedded."""
    if settings.embedded:
        return DeferredQueue()
    return _CeleryQueue(settings.broker_url)


EmbeddedWorkerStarter = Callable[[Settings], ServiceQueue]
"""Starts the in-process worker of the embedded mode (``worker.embedded.start``)."""


def start_worker_queue(
    settings: Settings, embedded_worker: EmbeddedWorkerStarter | None
) -> ServiceQueue:
    """The queue ``serve`` uses: Celery, or the in-process worker threads when embedded.

    Raises:
        StartupError: in embedded mode, if no embedded worker is given.
    """
    if not settings.embedded:
        return _CeleryQueue(settings.broker_url)
    if embedded_worker is None:
        raise StartupError("the embedded mode runs the worker in process: start `pacs-node serve`")
    return embedded_worker(settings)


@dataclass
class EdgeService:
    """A running SCP with its assembly and reconciler loops, worker queue and admin API."""

    settings: Settings
    engine: Engine
    scp: RunningSCP
    assembler: StudyAssembler
    api: ApiServer
    queue: ServiceQueue
    reconciler: Reconciler
    extra_scps: ScpProcesses | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        settings: Settings,
        queue: ServiceQueue | None = None,
        *,
        embedded_worker: EmbeddedWorkerStarter | None = None,
    ) -> EdgeService:
        """Open the database, start the worker queue, the SCP, the loops and the admin API.

        Args:
            settings: The node's settings.
            queue: The work queue to use (tests); by default Celery, or in embedded mode the
                worker ``embedded_worker`` starts.
            embedded_worker: Starts the in-process worker of the embedded mode.

        Raises:
            StartupError: if the database or broker is unreachable, a port is taken (see
                :func:`~pacs_node.checks.check_startup`) or, embedded, the worker cannot start.
            OSError: if the DICOM or the API port cannot be bound.
            ConfigError: if the selection rules are invalid.
        """
        policy = settings.policy
        check_startup(settings, worker_queue=queue is None)
        for warning in settings.doubts():
            LOG.warning("%s", warning)
        engine = make_engine(settings.database_url)
        sessions = make_session_factory(engine)
        ledger = InstanceLedger(sessions)
        spool = Spool(settings.spool_dir, settings.min_free_bytes)
        if partial := spool.remove_partial_writes():
            LOG.info("removed %d partial writes a crash left in the spool", partial)
        queue = queue or start_worker_queue(settings, embedded_worker)
        assembler = StudyAssembler.from_settings(settings, sessions, queue)
        reconciler = Reconciler(sessions, queue, policy)
        # One store for C-STORE and STOW-RS: both lock the same SOP Instance UIDs.
        store = InstanceStore(spool, ledger)
        app = create_app(settings, sessions, queue=queue, assembler=assembler, store=store)
        api = ApiServer.start(app, settings.api_host, settings.api_port)
        with contextlib.ExitStack() as on_failure:
            on_failure.callback(queue.stop)
            on_failure.callback(api.stop)
            # Storage commitment reports settle deliveries, then wake their jobs.
            commitments = CommitmentLedger(sessions, policy, queue.enqueue_delivery)
            shared = settings.scp_processes > 1
            scp = start_scp(settings, spool, ledger, commitments, store, shared_port=shared)
            on_failure.callback(scp.stop)
            extra = (
                ScpProcesses.start(settings, scp.port, settings.scp_processes - 1)
                if shared
                else None
            )
            on_failure.pop_all()  # all started: the service stops them
        service = cls(settings, engine, scp, assembler, api, queue, reconciler, extra)
        service._every(ASSEMBLY_INTERVAL_SECONDS, assembler.tick, "assembly")
        service._every(policy.reconcile_interval_seconds, reconciler.tick, "reconciler")
        LOG.info("listening as %s on %s:%d", settings.ae_title, settings.host, scp.port)
        return service

    def _every(self, seconds: float, action: Callable[[], object], name: str) -> None:
        def loop() -> None:
            while not self._stopping.wait(seconds):
                try:
                    action()
                except Exception:
                    LOG.exception("%s check failed; retrying", name)

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop the loops, the API, the SCP and the worker queue; release the database."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.api.stop()
        if self.extra_scps is not None:
            self.extra_scps.stop()
        self.scp.stop()
        self.queue.stop()
        self.engine.dispose()
