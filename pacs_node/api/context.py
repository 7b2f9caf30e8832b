"""What the API's routes need, built once by :func:`pacs_node.api.app.create_app`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.assembly import StudyAssembler
from pacs_node.config import Settings
from pacs_node.metrics import NodeMetrics
from pacs_node.queue import WorkQueue

Check = Callable[[], str]
"""A readiness check: returns a short detail when healthy, raises when not."""


@dataclass(frozen=True)
class ApiContext:
    """Dependencies of the routes."""

    settings: Settings
    sessions: sessionmaker[Session]
    queue: WorkQueue
    assembler: StudyAssembler
    metrics: NodeMetrics
    checks: Mapping[str, Check]


async def get_context(request: Request) -> ApiContext:
    """The context of the app serving ``request``."""
    context: ApiContext = request.app.state.context
    return context
