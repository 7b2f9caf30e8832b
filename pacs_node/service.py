"""The edge service: SCP plus study assembly, wired from settings (``pacs-node serve``)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine

from pacs_node.assembly import StudyAssembler
from pacs_node.config import Settings
from pacs_node.db.ledger import InstanceLedger
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.queue import CeleryJobQueue, JobQueue
from pacs_node.scp.server import RunningSCP, start_scp
from pacs_node.selection import load_rules
from pacs_node.spool import Spool

LOG = logging.getLogger(__name__)

ASSEMBLY_INTERVAL_SECONDS = 1.0


class PendingJobQueue:
    """Embedded mode without a broker: jobs stay ``queued`` in the database for a worker."""

    def enqueue(self, job_id: int) -> None:
        """Nothing to wake: the in-process worker polls the database."""
        LOG.info("job %d queued", job_id)


def make_queue(settings: Settings) -> JobQueue:
    """The queue for the configured broker."""
    if settings.embedded:
        return PendingJobQueue()
    return CeleryJobQueue(settings.broker_url)


@dataclass
class EdgeService:
    """A running SCP with its assembly loop; ``stop()`` shuts both down."""

    settings: Settings
    engine: Engine
    scp: RunningSCP
    assembler: StudyAssembler
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def start(cls, settings: Settings, queue: JobQueue | None = None) -> EdgeService:
        """Open the database, start the SCP and the assembly loop.

        Raises:
            OSError: if the DICOM port cannot be bound.
            ConfigError: if the selection rules cannot be loaded.
            sqlalchemy.exc.OperationalError: if the database cannot be reached.
        """
        engine = make_engine(settings.database_url)
        with engine.connect():
            pass  # fail now, clearly, if the database is unreachable
        sessions = make_session_factory(engine)
        ledger = InstanceLedger(sessions)
        spool = Spool(settings.spool_dir, settings.min_free_bytes)
        assembler = StudyAssembler(
            sessions,
            load_rules(settings.selection_rules),
            queue or make_queue(settings),
            quiet_seconds=settings.quiet_seconds,
            release_grace_seconds=settings.release_grace_seconds,
        )
        scp = start_scp(settings, spool, ledger)
        service = cls(settings, engine, scp, assembler)
        service._thread = threading.Thread(target=service._assemble, name="assembly", daemon=True)
        service._thread.start()
        LOG.info("listening as %s on %s:%d", settings.ae_title, settings.host, scp.port)
        return service

    def _assemble(self) -> None:
        while not self._stopping.wait(ASSEMBLY_INTERVAL_SECONDS):
            try:
                self.assembler.tick()
            except Exception:
                LOG.exception("assembly check failed; retrying")

    def stop(self) -> None:
        """Stop the assembly loop and the SCP, and release the database."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.scp.stop()
        self.engine.dispose()
