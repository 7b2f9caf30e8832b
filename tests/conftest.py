"""Shared fixtures: real PostgreSQL and Redis for the session, migrated databases per test."""

from __future__ import annotations

import itertools
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.db import migrate
from pacs_node.db.session import make_engine, make_session_factory
from tests.helpers.services import Postgres, Redis, start_postgres, start_redis

_counter = itertools.count()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A command run in-process configures logging for its process (a stderr handler, levels,
    warnings captured): undo it, so later tests do not write to a closed capture stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster for the whole test session."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    """A Redis server for the whole test session."""
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _postgres_template(postgres: Postgres) -> str:
    """A database migrated to head once, cloned for each test."""
    admin = create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE template_pacs"))
    admin.dispose()
    migrate.upgrade(postgres.url("template_pacs"))
    return "template_pacs"


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


def new_postgres_database(postgres: Postgres, template: str) -> str:
    """Create a fresh database from the migrated template; return its URL."""
    name = f"test_{next(_counter)}"
    admin = create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE {template}'))
    admin.dispose()
    return postgres.url(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: SQLite (embedded default) and PostgreSQL (production)."""
    if request.param == "sqlite":
        path = tmp_path / "node.db"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite:///{path}"
    template = request.getfixturevalue("_postgres_template")
    return new_postgres_database(request.getfixturevalue("postgres"), template)


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on a fresh migrated database, SQLite and PostgreSQL."""
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def postgres_url(postgres: Postgres, _postgres_template: str) -> str:
    """A migrated, empty PostgreSQL database."""
    return new_postgres_database(postgres, _postgres_template)
