"""Fixtures of the admin API tests: sessions on both backends, and an app on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.api.app import create_app
from pacs_node.api.context import Check
from pacs_node.api.tokens import Role, create_token
from pacs_node.config import Settings
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.db.tables import Job


class RecordingQueue:
    """Stands in for the broker; records each job's state as committed when it was enqueued."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.enqueued: list[tuple[int, str]] = []
        self.delivery_woken: list[tuple[int, str]] = []

    def _committed_state(self, job_id: int) -> str:
        with self.sessions() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job.state

    def enqueue(self, job_id: int) -> None:
        self.enqueued.append((job_id, self._committed_state(job_id)))

    def enqueue_delivery(self, job_id: int) -> None:
        self.delivery_woken.append((job_id, self._committed_state(job_id)))


@dataclass
class Node:
    """An admin app on a fresh PostgreSQL database, with a viewer and an admin token."""

    client: TestClient
    sessions: sessionmaker[Session]
    queue: RecordingQueue
    spool: Path
    settings: Settings
    secrets: dict[Role, str] = field(default_factory=dict)

    def headers(self, role: Role = Role.VIEWER) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[role]}"}


@pytest.fixture
def make_node(postgres_url: str, tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """Build a :class:`Node`; ``checks`` replaces the readiness checks."""
    engine = make_engine(postgres_url)
    sessions = make_session_factory(engine)
    clients: list[TestClient] = []

    def build(checks: dict[str, Check] | None = None) -> Node:
        spool = tmp_path / "spool"
        spool.mkdir(exist_ok=True)
        settings = Settings(database_url=postgres_url, spool_dir=spool, min_free_bytes=0)
        queue = RecordingQueue(sessions)
        app = create_app(settings, sessions, queue=queue, checks=checks)
        client = TestClient(app)
        clients.append(client)
        node = Node(client, sessions, queue, spool, settings)
        with sessions.begin() as session:
            for role in Role:
                _, node.secrets[role] = create_token(session, f"{role.value}-token", role)
        return node

    yield build
    for client in clients:
        client.close()
    engine.dispose()


@pytest.fixture
def node(make_node: Callable[..., Node]) -> Node:
    """An admin app with the default readiness checks."""
    return make_node()
