from __future__ import annotations

from sqlalchemy import inspect

from pacs_node.db import migrate
from pacs_node.db.session import make_engine


def test_migrations_match_the_tables(database_url: str) -> None:
    """`alembic check`: the migrations create exactly the tables in code."""
    migrate.check(database_url)


def test_upgrade_is_idempotent_and_creates_every_table(database_url: str) -> None:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"studies", "series", "instances", "jobs", "job_events", "receive_errors"} <= names
