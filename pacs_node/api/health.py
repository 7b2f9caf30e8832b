"""Liveness (``/healthz``), readiness (``/readyz``) and Prometheus metrics (``/metrics``).

Probes are unauthenticated (orchestrators call them) and say nothing about patients; metrics
need a viewer token.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.api.auth import Viewer
from pacs_node.api.context import ApiContext, Check, get_context
from pacs_node.api.schemas import CheckResult, Readiness
from pacs_node.config import Settings

LOG = logging.getLogger(__name__)
router = APIRouter()
BROKER_TIMEOUT_SECONDS = 2.0


def database_check(sessions: sessionmaker[Session]) -> Check:
    """The database answers a query."""

    def check() -> str:
        with sessions() as session:
            session.execute(text("SELECT 1"))
        return "reachable"

    return check


def broker_check(broker_url: str) -> Check:
    """The broker accepts a connection (always true in embedded mode)."""

    def check() -> str:
        if broker_url == "embedded":
            return "embedded: no broker"
        with Connection(broker_url, connect_timeout=BROKER_TIMEOUT_SECONDS) as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
        return "reachable"

    return check


def spool_check(spool_dir: Path, min_free_bytes: int) -> Check:
    """The spool's disk has more free space than the refusal watermark."""

    def check() -> str:
        free = shutil.disk_usage(spool_dir).free
        if free < min_free_bytes:
            raise OSError(f"{free} bytes free, below the {min_free_bytes}-byte watermark")
        return f"{free // 2**20} MiB free"

    return check


def model_check(model: Path | None) -> Check:
    """The configured checkpoint is a readable file (loading it is the GPU worker's job)."""

    def check() -> str:
        if model is None:
            return "default checkpoint of the worker"
        with model.open("rb") as handle:
            if not handle.read(1):
                raise OSError("checkpoint file is empty")
        return "checkpoint readable"

    return check


def default_checks(settings: Settings, sessions: sessionmaker[Session]) -> dict[str, Check]:
    """Database, broker, spool space and model."""
    return {
        "database": database_check(sessions),
        "broker": broker_check(settings.broker_url),
        "spool": spool_check(settings.spool_dir, settings.min_free_bytes),
        "model": model_check(settings.model),
    }


def run_checks(checks: Mapping[str, Check]) -> Readiness:
    """Run every check; a check that raises is not ok, with the error as its detail."""
    results = {}
    for name, check in checks.items():
        try:
            results[name] = CheckResult(ok=True, detail=check())
        except Exception as exc:
            LOG.warning("readiness check %s failed: %s", name, type(exc).__name__)
            results[name] = CheckResult(ok=False, detail=f"{type(exc).__name__}: {exc}")
    return Readiness(ready=all(r.ok for r in results.values()), checks=results)


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    """The process serves requests."""
    return {"status": "alive"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(context: Annotated[ApiContext, Depends(get_context)]) -> JSONResponse:
    """Database, broker, spool space and model: 200 when all are ok, else 503."""
    readiness = run_checks(context.checks)
    return JSONResponse(readiness.model_dump(), status_code=200 if readiness.ready else 503)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
def metrics(context: Annotated[ApiContext, Depends(get_context)], _: Viewer) -> Response:
    """The node's metrics in Prometheus text format (needs a viewer token)."""
    return Response(context.metrics.render(), media_type=CONTENT_TYPE_LATEST)
