"""The edge service: SCP, study assembly, reconciler and admin API (``pacs-node serve``).

In embedded mode (``broker_url == "embedded"``) the worker runs in this process: its module is
loaded by name (``worker.embedded``), so the node never imports the ML stack otherwise.
"""

from __future__ import annotations

import importlib
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kombu import Connection
from kombu.exceptions import KombuError
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from pacs_node.api.app import create_app
from pacs_node.api.server import ApiServer
from pacs_node.assembly import StudyAssembler
from pacs_node.config import Settings
from pacs_node.db.leases import JobPolicy
from pacs_node.db.ledger import InstanceLedger
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.errors import StartupError
from pacs_node.queue import CeleryJobQueue, WorkQueue
from pacs_node.reconciler import Reconciler
from pacs_node.scp.server import RunningSCP, start_scp
from pacs_node.selection import load_rules
from pacs_node.spool import Spool

LOG = logging.getLogger(__name__)

ASSEMBLY_INTERVAL_SECONDS = 1.0


EMBEDDED_WORKER_MODULE = "worker.embedded"
BROKER_CHECK_SECONDS = 5.0


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def _masked(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(malformed URL)"


def check_database(url: str) -> None:
    """Open and close one connection to the database.

    Raises:
        StartupError: if the URL is malformed or the database cannot be reached.
    """
    try:
        engine = make_engine(url)
    except (ArgumentError, ImportError) as exc:
        raise StartupError(f"bad database URL {_masked(url)}: {_first_line(exc)}") from exc
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        raise StartupError(f"cannot reach the database {_masked(url)}: {_first_line(exc)}") from exc
    finally:
        engine.dispose()


def check_broker(url: str, timeout: float = BROKER_CHECK_SECONDS) -> None:
    """Connect to the Celery broker once.

    Raises:
        StartupError: if the broker cannot be reached within ``timeout`` seconds.
    """
    try:
        with Connection(url, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
    except (KombuError, OSError) as exc:
        raise StartupError(f"cannot reach the broker {_masked(url)}: {_first_line(exc)}") from exc


def check_port_free(host: str, port: int, what: str) -> None:
    """Fail early, naming the port, when ``host:port`` cannot be bound (port 0 always can).

    Raises:
        StartupError: if the address is in use or not available here.
    """
    if port == 0:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartupError(
                f"cannot listen for {what} on {host}:{port}: {exc.strerror}"
            ) from exc


def check_checkpoint(path: Path) -> None:
    """Check that a configured model checkpoint is a readable file.

    Raises:
        StartupError: if it is missing or unreadable.
    """
    try:
        with path.open("rb") as checkpoint:
            checkpoint.read(1)
    except OSError as exc:
        raise StartupError(f"cannot read the model checkpoint {path}: {exc.strerror}") from exc


def check_startup(settings: Settings, *, worker_queue: bool = True) -> None:
    """Check what ``serve`` needs before starting anything, so a bad setting gives one clear
    error: the database, both ports and, when ``worker_queue`` (the service starts its own
    Celery queue), the broker. The embedded worker checks its checkpoint when it starts.

    Raises:
        StartupError: naming the first problem found.
    """
    check_database(settings.database_url)
    if worker_queue and not settings.embedded:
        check_broker(settings.broker_url)
    check_port_free(settings.host, settings.port, "DICOM")
    check_port_free(settings.api_host, settings.api_port, "the admin API")


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


def start_worker_queue(settings: Settings, policy: JobPolicy) -> ServiceQueue:
    """The queue ``serve`` uses: Celery, or the in-process worker threads when embedded.

    Raises:
        ImportError: in embedded mode, if the worker package (the ML stack) is not installed.
    """
    if not settings.embedded:
        return _CeleryQueue(settings.broker_url)
    module = importlib.import_module(EMBEDDED_WORKER_MODULE)
    worker: ServiceQueue = module.start(settings, policy)
    return worker


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
    _stopping: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        settings: Settings,
        queue: ServiceQueue | None = None,
        policy: JobPolicy | None = None,
    ) -> EdgeService:
        """Open the database, start the worker queue, the SCP, the loops and the admin API.

        ``policy`` defaults to the job-control limits in ``settings``
        (see :class:`~pacs_node.db.leases.JobPolicy`).

        Raises:
            StartupError: if the database or broker is unreachable, a port is taken (see
                :func:`check_startup`) or, embedded, the model checkpoint is unreadable.
            OSError: if the DICOM or the API port cannot be bound.
            ConfigError: if the selection rules or job-control limits are invalid.
            ImportError: in embedded mode, if the worker package is not installed.
        """
        policy = policy or JobPolicy.from_settings(settings)
        check_startup(settings, worker_queue=queue is None)
        for warning in settings.doubts():
            LOG.warning("%s", warning)
        engine = make_engine(settings.database_url)
        sessions = make_session_factory(engine)
        ledger = InstanceLedger(sessions)
        spool = Spool(settings.spool_dir, settings.min_free_bytes)
        queue = queue or start_worker_queue(settings, policy)
        assembler = StudyAssembler(
            sessions,
            load_rules(settings.selection_rules),
            queue,
            quiet_seconds=settings.quiet_seconds,
            release_grace_seconds=settings.release_grace_seconds,
        )
        reconciler = Reconciler(sessions, queue, policy)
        app = create_app(settings, sessions, queue=queue, assembler=assembler)
        api = ApiServer.start(app, settings.api_host, settings.api_port)
        try:
            scp = start_scp(settings, spool, ledger)
        except Exception:
            api.stop()
            queue.stop()
            raise
        service = cls(settings, engine, scp, assembler, api, queue, reconciler)
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
        self.scp.stop()
        self.queue.stop()
        self.engine.dispose()
