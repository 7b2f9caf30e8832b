"""The admin application: API, probes, metrics and the dashboard, wired from settings."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.api import dicomweb, feedback, health, retrievals, routes, viewer
from pacs_node.api.context import ApiContext, Check
from pacs_node.assembly import StudyAssembler
from pacs_node.config import Settings
from pacs_node.instance_store import InstanceStore
from pacs_node.metrics import NodeMetrics
from pacs_node.queue import WorkQueue

LOG = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"


async def _log_request(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Log method, route template, status and time; never the URL (its query may hold PHI)."""
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    template = getattr(route, "path", "<unmatched>")
    LOG.info(
        "%s %s %d %.1f ms",
        request.method,
        template,
        response.status_code,
        (time.perf_counter() - started) * 1000,
    )
    return response


def create_app(
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    queue: WorkQueue,
    assembler: StudyAssembler | None = None,
    metrics: NodeMetrics | None = None,
    checks: Mapping[str, Check] | None = None,
    store: InstanceStore | None = None,
) -> FastAPI:
    """Build the admin application.

    Args:
        settings: The node's settings (spool, broker, model for readiness).
        sessions: Session factory of the node's database.
        queue: Where retried jobs are enqueued.
        assembler: Used by force-complete; built from ``settings`` when omitted.
        metrics: The process's instruments; a registry with database counts when omitted.
        checks: Readiness checks; database, broker, spool and model when omitted.
        store: Where STOW-RS stores instances: the SCP's, so both lock the same UIDs; its own
            over the settings' spool when omitted.

    Raises:
        ConfigError: if the selection rules in ``settings`` cannot be loaded.
    """
    app = FastAPI(
        title="pacs-node admin API",
        version="1",
        description=(
            "Job history, job detail, retry/replay/force-complete, retrieve from a source, "
            "per-finding feedback, statistics and metrics; DICOMweb (STOW-RS, QIDO-RS, WADO-RS) "
            "under /dicom-web; the OHIF viewer under /viewer. "
            "Send `Authorization: Bearer <token>` (`pacs-node tokens create`); viewers read and "
            "give feedback, senders store by STOW-RS, admins do everything. Actions are written "
            "to the audit log."
        ),
    )
    app.state.context = ApiContext(
        settings=settings,
        sessions=sessions,
        queue=queue,
        assembler=assembler or StudyAssembler.from_settings(settings, sessions, queue),
        metrics=metrics or NodeMetrics(sessions),
        checks=checks if checks is not None else health.default_checks(settings, sessions),
    )
    dicomweb.install_context(app, settings, sessions, store)
    app.middleware("http")(_log_request)
    app.include_router(routes.router)
    app.include_router(retrievals.router)
    app.include_router(feedback.router)
    app.include_router(health.router)
    app.include_router(dicomweb.router)
    app.include_router(viewer.router)
    app.mount("/dashboard", StaticFiles(directory=STATIC_DIR, html=True), name="dashboard")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    return app
