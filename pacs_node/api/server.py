"""Serve the admin application with uvicorn in a background thread of the node's process."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

LOG = logging.getLogger(__name__)
START_TIMEOUT_SECONDS = 10.0
SHUTDOWN_GRACE_SECONDS = 3


@dataclass
class ApiServer:
    """A running uvicorn server; ``port`` is the bound port (useful when asked for port 0)."""

    server: uvicorn.Server
    thread: threading.Thread
    port: int

    @classmethod
    def start(cls, app: FastAPI, host: str, port: int) -> ApiServer:
        """Start serving ``app`` on ``host:port`` and wait until it listens.

        Raises:
            OSError: if the server did not start (e.g. the port is taken).
        """
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
        server = uvicorn.Server(config)
        failure: list[BaseException] = []

        def serve() -> None:
            try:
                server.run()
            except (Exception, SystemExit) as exc:  # uvicorn exits or raises when it cannot bind
                failure.append(exc)

        thread = threading.Thread(target=serve, name="admin-api", daemon=True)
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                cause = failure[0] if failure else None
                raise OSError(f"admin API did not start on {host}:{port}: {cause}") from cause
            time.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()[1]
        LOG.info("admin API on http://%s:%d/", host, bound)
        return cls(server, thread, int(bound))

    def stop(self) -> None:
        """Stop accepting requests and wait for the server thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
