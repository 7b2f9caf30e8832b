from __future__ import annotations

import re
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, inspect, text

from pacs_node.db import migrate
from pacs_node.db.node_identity import read_node_identity
from pacs_node.db.session import make_engine, make_session_factory
from worker.main import main


def test_migrations_match_the_tables(database_url: str) -> None:
    """`alembic check`: the migrations create exactly the tables in code."""
    migrate.check(database_url)


def test_upgrade_is_idempotent_and_creates_every_table(database_url: str) -> None:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"studies", "series", "instances", "jobs", "job_events", "receive_errors"} <= names


def test_jobs_skipped_before_the_skip_reason_column_keep_their_reason(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    migrate.upgrade(url, "0001")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO studies (id, study_instance_uid, status, first_received_at, "
                "last_received_at, force_complete) VALUES (1, '1.2.3', 'complete', :t, :t, 0)"
            ),
            {"t": "2026-01-01 00:00:00"},
        )
        for job_id, state, reason in ((1, "skipped", "modality CT is not MR"), (2, "failed", "x")):
            conn.execute(
                text(
                    "INSERT INTO jobs (id, study_id, version, state, reason, retryable, attempts, "
                    "created_at, updated_at) VALUES (:id, 1, :id, :state, :reason, 0, 0, :t, :t)"
                ),
                {"id": job_id, "state": state, "reason": reason, "t": "2026-01-01 00:00:00"},
            )
    migrate.upgrade(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, skip_reason FROM jobs ORDER BY id")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(1, "modality CT is not MR"), (2, None)]


def test_each_database_gets_its_own_node_identity_once(tmp_path: Path) -> None:
    """Created by the first upgrade and kept by later ones: two databases never share one."""

    def identity(url: str) -> str:
        engine = make_engine(url)
        with make_session_factory(engine)() as session:
            node_id = read_node_identity(session).node_id
        engine.dispose()
        return node_id

    first, second = (f"sqlite:///{tmp_path / name}.db" for name in ("a", "b"))
    migrate.upgrade(first, "0002")  # a database from before the identity existed
    migrate.upgrade(first)
    migrate.upgrade(second)
    kept = identity(first)
    migrate.upgrade(first)
    assert identity(first) == kept != identity(second)
    assert migrate.current_revision(first) == migrate.current_revision(second) == "0008"


def test_db_commands_print_the_schema_revision_and_node_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACS_NODE_DATABASE_URL", f"sqlite:///{tmp_path / 'node.db'}")
    assert main(["db", "upgrade"]) == 0
    upgraded = capsys.readouterr().out
    assert main(["db", "check"]) == 0
    checked = capsys.readouterr().out
    node_id = re.search(r"node identity ([0-9a-f]{32})", upgraded)
    assert node_id is not None and node_id.group(1) in checked
    assert "revision 0008" in upgraded and "revision 0008" in checked


def _insert_done_job(conn: Connection, t: str) -> None:
    """Study 1 with its job 1, done, as raw rows (no ORM: the schema is an older revision)."""
    conn.execute(
        text(
            "INSERT INTO studies (id, study_instance_uid, status, first_received_at, "
            "last_received_at, force_complete) VALUES (1, '1.2.3', 'complete', :t, :t, 0)"
        ),
        {"t": t},
    )
    conn.execute(
        text(
            "INSERT INTO jobs (id, study_id, version, state, retryable, attempts, created_at, "
            "updated_at) VALUES (1, 1, 1, 'done', 0, 0, :t, :t)"
        ),
        {"t": t},
    )


def test_deliveries_recorded_by_address_take_their_destination_names(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    migrate.upgrade(url, "0003")
    engine = make_engine(url)
    t = "2026-01-01 00:00:00"
    with engine.begin() as conn:
        _insert_done_job(conn, t)
        for result_id, kind in ((1, "sr"), (2, "oru")):
            conn.execute(
                text(
                    "INSERT INTO results (id, job_id, kind, path, sha256, size_bytes, created_at) "
                    "VALUES (:id, 1, :kind, 'x', 'x', 1, :t)"
                ),
                {"id": result_id, "kind": kind, "t": t},
            )
        rows = [
            (1, "dicom", "PACS@pacs:104"),
            (1, "dicom", "ARCHIVE@archive:104"),
            (1, "dicom", "PACS@other:104"),  # same default name for the same result: kept as is
            (2, "hl7", "ris:2575"),
        ]
        for result_id, channel, destination in rows:
            conn.execute(
                text(
                    "INSERT INTO deliveries (job_id, result_id, channel, destination, state, "
                    "attempts, updated_at) VALUES (1, :r, :c, :d, 'sent', 1, :t)"
                ),
                {"r": result_id, "c": channel, "d": destination, "t": t},
            )
    migrate.upgrade(url)
    with engine.connect() as conn:
        names = conn.execute(text("SELECT destination FROM deliveries ORDER BY id")).scalars()
        assert list(names) == ["PACS", "ARCHIVE", "PACS@other:104", "hl7"]
    engine.dispose()


def test_quality_columns_are_added_and_dropped_in_place_on_sqlite(tmp_path: Path) -> None:
    """Jobs referred to by other rows (foreign keys enforced) keep their rows both ways; jobs
    from before the quality check have none (null: no verdict)."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    migrate.upgrade(url, "0007")
    engine = make_engine(url)
    t = "2026-01-01 00:00:00"
    with engine.begin() as conn:
        _insert_done_job(conn, t)
        conn.execute(
            text(
                "INSERT INTO job_events (job_id, at, state, message, details) "
                "VALUES (1, :t, 'done', 'done', '{}')"
            ),
            {"t": t},
        )
    migrate.upgrade(url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT needs_review, review_reasons FROM jobs")).one()
        assert tuple(row) == (None, None)
    command.downgrade(migrate.alembic_config(url), "0007")
    with engine.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("jobs")}
        assert conn.execute(text("SELECT count(*) FROM job_events")).scalar() == 1
        assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
    engine.dispose()
    assert "needs_review" not in columns and "review_reasons" not in columns
    assert migrate.current_revision(url) == "0007"
