"""A worker's claim on a job: who holds it, and a keeper that renews it while the job runs."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from pacs_node.db.base import utcnow
from pacs_node.db.leases import renew_lease
from pacs_node.policy import JobPolicy

LOG = logging.getLogger(__name__)


class LeaseLostError(Exception):
    """The worker no longer holds the job it was running."""


def worker_identity() -> str:
    """This thread's lease owner name: host, process and thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class LeaseKeeper:
    """Renews a job's lease in the background until stopped or the job's time limit is reached.

    Past the time limit the lease is left to expire, so the reconciler ends the attempt even if
    the model hangs.
    """

    def __init__(
        self, sessions: sessionmaker[Session], job_id: int, owner: str, policy: JobPolicy
    ) -> None:
        self._sessions = sessions
        self._job_id = job_id
        self._owner = owner
        self._policy = policy
        self._deadline = time.monotonic() + policy.job_timeout_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        interval = self._policy.lease_seconds / 3
        while not self._stop.wait(interval) and time.monotonic() < self._deadline:
            until = utcnow() + timedelta(seconds=self._policy.lease_seconds)
            try:
                with self._sessions.begin() as session:
                    held = renew_lease(session, self._job_id, self._owner, until)
            except Exception:
                LOG.exception("job %d: could not renew the lease", self._job_id)
                continue
            if not held:
                LOG.warning("job %d: lease lost", self._job_id)
                return
