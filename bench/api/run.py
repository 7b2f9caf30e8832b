"""Admin API benchmark: job-history queries and a job detail over 1,000,000 jobs in PostgreSQL.

Loads synthetic studies and jobs (a year of them, with events, and results and deliveries for
one job in ten) with ``INSERT ... SELECT generate_series`` and then measures, for each common
query, p50/p95 of

* the API: an HTTP request to the admin app served by uvicorn (token check, validation, the
  query, JSON), over a keep-alive connection on loopback, and
* bare SQL: one hand-written statement returning the same rows, through psycopg2,

and prints their ratio (our overhead). The target is API p95 under 50 ms.

Usage: ``python bench/api/run.py [--database-url URL] [--jobs 1000000] [--repeats 200]``.
Without ``--database-url`` a throw-away PostgreSQL cluster is started (and stopped) on loopback.
"""

# ruff: noqa: S608  (the SQL here is built from constants and numbers, never from input)

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Engine, create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pacs_node.api.app import create_app
from pacs_node.api.server import ApiServer
from pacs_node.api.tokens import Role, create_token
from pacs_node.config import Settings
from pacs_node.db import migrate
from pacs_node.db.queries import encode_cursor
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.service import DeferredQueue

END = "2026-11-22 00:00:00+00"
PATIENTS = 200_000
AES = ("MRI_3T", "MRI_15T", "PACS", "CT_SCANNER")
# (state, share of jobs in per-mille) for a node that has run for a year.
STATE_CASE = """CASE
  WHEN i % 1000 < 900 THEN 'done' WHEN i % 1000 < 950 THEN 'failed'
  WHEN i % 1000 < 980 THEN 'skipped' WHEN i % 1000 < 990 THEN 'superseded'
  WHEN i % 1000 < 995 THEN 'queued' ELSE 'delivering' END"""


def load(engine: Engine, jobs: int) -> None:
    """Insert ``jobs`` studies and jobs over a year, 4 events each, outputs for 1 in 10."""
    step = 365 * 86400 / jobs
    statements = [
        f"""INSERT INTO studies (id, study_instance_uid, patient_id, accession_number, calling_ae,
              status, first_received_at, last_received_at, completed_at, force_complete)
            SELECT i, '1.2.826.0.1.3680043.10.1439.8.' || i,
              'PID' || (i::bigint * 7919 % {PATIENTS}), 'ACC' || i,
              (ARRAY{list(AES)})[1 + i % {len(AES)}], 'complete', t, t, t, false
            FROM generate_series(1, {jobs}) i,
                 LATERAL (SELECT timestamptz '{END}' - i * interval '{step} seconds') s(t)""",
        f"""INSERT INTO jobs (id, study_id, version, state, reason, retryable, trigger, attempts,
              model_name, config_hash, checkpoint_sha256, created_at, updated_at)
            SELECT i, i, 1, {STATE_CASE},
              CASE WHEN i % 1000 BETWEEN 900 AND 949 THEN 'dicom delivery dead-lettered' END,
              false, 'quiet_period', 1,
              CASE WHEN i % 7 = 0 THEN 'lumbarclip-tiny' ELSE 'lumbarclip-atto' END,
              'cfg', md5(i::text) || md5(i::text), t, t + (60 + i % 900) * interval '1 second'
            FROM generate_series(1, {jobs}) i,
                 LATERAL (SELECT timestamptz '{END}' - i * interval '{step} seconds') s(t)""",
        """INSERT INTO job_events (job_id, at, state, message, details)
            SELECT j.id, j.created_at + k * interval '20 seconds',
              (ARRAY['queued','running','results_ready','delivering'])[k],
              'step ' || k, '{}'::json
            FROM jobs j, generate_series(1, 4) k""",
        """INSERT INTO results (id, job_id, kind, sop_class_uid, series_instance_uid,
              sop_instance_uid, control_id, path, sha256, size_bytes, created_at)
            SELECT 2 * j.id + k, j.id, (ARRAY['seg','oru'])[k + 1],
              CASE WHEN k = 0 THEN '1.2.840.10008.5.1.4.1.1.66.4' END,
              CASE WHEN k = 0 THEN '2.25.' || j.id || '1' END,
              CASE WHEN k = 0 THEN '2.25.' || j.id || '2' END,
              CASE WHEN k = 1 THEN 'PN' || j.id END,
              'results/' || j.id || '/' || k, md5(j.id::text) || md5(k::text), 1000, j.updated_at
            FROM jobs j, generate_series(0, 1) k WHERE j.id % 10 = 0""",
        """INSERT INTO deliveries (job_id, result_id, channel, destination, state, attempts,
              last_status, delivered_at, updated_at)
            SELECT r.job_id, r.id, d.channel, d.destination, 'sent', 1, d.status, r.created_at,
              r.created_at
            FROM results r JOIN (VALUES
              ('seg', 'dicom', 'PACS@10.0.0.5:104', '0x0000'),
              ('seg', 'dicom', 'ARCHIVE@10.0.0.9:104', '0x0000'),
              ('oru', 'hl7', '10.0.0.7:2575', 'AA')) d(kind, channel, destination, status)
            ON d.kind = r.kind""",
    ]
    with engine.begin() as conn:
        for statement in statements:
            started = time.perf_counter()
            rows = conn.execute(text(statement)).rowcount
            print(
                f"  {rows:>9,} rows in {time.perf_counter() - started:5.1f} s: "
                f"{statement.split()[2]}",
                flush=True,
            )
        for table in ("studies", "jobs", "results", "deliveries", "job_events"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


SUMMARY_SQL = """SELECT j.*, s.study_instance_uid, s.patient_id, s.accession_number, s.calling_ae
  FROM jobs j JOIN studies s ON j.study_id = s.id"""


@dataclass(frozen=True)
class Case:
    """A query: API path and params, and the bare SQL returning the same rows."""

    name: str
    path: str
    params: Callable[[random.Random], dict[str, str]]
    sql: Callable[[dict[str, str]], tuple[str, tuple[object, ...]]]


def _page(where: str, args: tuple[object, ...]) -> tuple[str, tuple[object, ...]]:
    clause = f" WHERE {where}" if where else ""
    return f"{SUMMARY_SQL}{clause} ORDER BY j.created_at DESC, j.id DESC LIMIT 51", args


def cases(jobs: int, engine: Engine) -> list[Case]:
    """The common admin queries."""
    with engine.connect() as conn:
        deep = conn.execute(
            text(
                "SELECT created_at, id FROM jobs ORDER BY created_at DESC, id DESC "
                "OFFSET :n LIMIT 1"
            ),
            {"n": jobs // 2},
        ).one()
    cursor = encode_cursor(deep.created_at, deep.id)
    day = "2026-06-01T00:00:00+00:00"
    return [
        Case("latest page", "/api/jobs", lambda r: {}, lambda p: _page("", ())),
        Case(
            "state=failed",
            "/api/jobs",
            lambda r: {"state": "failed"},
            lambda p: _page("j.state IN (%s)", ("failed",)),
        ),
        Case(
            "state=queued,delivering",
            "/api/jobs",
            lambda r: {"state": ["queued", "delivering"]},  # type: ignore[dict-item]
            lambda p: _page("j.state IN (%s, %s)", ("queued", "delivering")),
        ),
        Case(
            "deep page (keyset, 500k back)",
            "/api/jobs",
            lambda r: {"cursor": cursor},
            lambda p: _page("(j.created_at, j.id) < (%s, %s)", (deep.created_at, deep.id)),
        ),
        Case(
            "patient_id",
            "/api/jobs",
            lambda r: {"patient_id": f"PID{r.randrange(PATIENTS)}"},
            lambda p: _page("s.patient_id = %s", (p["patient_id"],)),
        ),
        Case(
            "accession_number",
            "/api/jobs",
            lambda r: {"accession_number": f"ACC{r.randrange(1, jobs)}"},
            lambda p: _page("s.accession_number = %s", (p["accession_number"],)),
        ),
        Case(
            "one day, state=done",
            "/api/jobs",
            lambda r: {
                "state": "done",
                "created_from": day,
                "created_to": "2026-06-02T00:00:00+00:00",
            },
            lambda p: _page(
                "j.state IN (%s) AND j.created_at >= %s AND j.created_at < %s",
                ("done", p["created_from"], p["created_to"]),
            ),
        ),
        Case(
            "calling_ae + state=failed",
            "/api/jobs",
            lambda r: {"calling_ae": "PACS", "state": "failed"},
            lambda p: _page("j.state IN (%s) AND s.calling_ae = %s", ("failed", "PACS")),
        ),
        Case(
            "model_name (1 in 7)",
            "/api/jobs",
            lambda r: {"model_name": "lumbarclip-tiny"},
            lambda p: _page("j.model_name = %s", ("lumbarclip-tiny",)),
        ),
        Case(
            "job detail",
            "/api/jobs/{id}",
            lambda r: {"id": str(10 * r.randrange(1, jobs // 10))},
            lambda p: (
                f"{SUMMARY_SQL} WHERE j.id = %(id)s;"
                " SELECT * FROM job_events WHERE job_id = %(id)s ORDER BY id;"
                " SELECT se.*, count(i.id) FROM series se LEFT JOIN instances i"
                " ON i.series_id = se.id WHERE se.study_id = %(id)s GROUP BY se.id;"
                " SELECT * FROM results WHERE job_id = %(id)s ORDER BY id;"
                " SELECT * FROM deliveries WHERE job_id = %(id)s ORDER BY id",
                {"id": int(p["id"])},  # type: ignore[arg-type]
            ),
        ),
    ]


def percentiles(values: list[float]) -> tuple[float, float]:
    """(p50, p95) in milliseconds."""
    ordered = sorted(values)
    return (statistics.median(ordered) * 1000, ordered[int(0.95 * (len(ordered) - 1))] * 1000)


def time_api(client: httpx.Client, case: Case, params: dict[str, str]) -> float:
    path = case.path.format(**params) if "{" in case.path else case.path
    query = {} if "{" in case.path else params
    started = time.perf_counter()
    response = client.get(path, params=query)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def time_sql(raw: object, case: Case, params: dict[str, str]) -> float:
    statement, args = case.sql(params)
    started = time.perf_counter()
    with raw.cursor() as cur:  # type: ignore[attr-defined]
        for part in statement.split(";"):
            cur.execute(part, args)
            cur.fetchall()
    return time.perf_counter() - started


@contextmanager
def database(url: str | None) -> Iterator[str]:
    """The given database, or a throw-away cluster's."""
    if url:
        yield url
        return
    from tests.helpers.services import start_postgres

    server = start_postgres()
    try:
        admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE bench"))
        admin.dispose()
        yield server.url("bench")
    finally:
        server.stop()


def main(argv: list[str]) -> int:
    """Run the benchmark; print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: start one)")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    with database(args.database_url) as url:
        migrate.upgrade(url)
        engine = make_engine(url)
        started = time.perf_counter()
        print(f"loading {args.jobs:,} jobs", flush=True)
        load(engine, args.jobs)
        print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            _, secret = create_token(session, "bench", Role.VIEWER)
        settings = Settings(database_url=url, spool_dir=Path("/tmp"), min_free_bytes=0)
        server = ApiServer.start(
            create_app(settings, sessions, queue=DeferredQueue()), "127.0.0.1", 0
        )
        raw = engine.raw_connection()
        rng = random.Random(7)
        print(
            f"\n{'query':<32} {'API p50':>8} {'p95':>7} {'SQL p50':>8} {'p95':>7} "
            f"{'ratio p50':>9} {'p95':>6}  (ms, {args.repeats} runs)"
        )
        worst = 0.0
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{server.port}",
                headers={"Authorization": f"Bearer {secret}"},
            ) as client:
                for case in cases(args.jobs, engine):
                    api_times, sql_times = [], []
                    for i in range(args.repeats + 5):
                        params = case.params(rng)
                        a, s = time_api(client, case, params), time_sql(raw, case, params)
                        if i >= 5:  # warm-up
                            api_times.append(a)
                            sql_times.append(s)
                    (a50, a95), (s50, s95) = percentiles(api_times), percentiles(sql_times)
                    worst = max(worst, a95)
                    print(
                        f"{case.name:<32} {a50:8.2f} {a95:7.2f} {s50:8.2f} {s95:7.2f} "
                        f"{a50 / s50:9.1f} {a95 / s95:6.1f}",
                        flush=True,
                    )
        finally:
            raw.close()
            server.stop()
            engine.dispose()
        print(f"\nworst API p95: {worst:.1f} ms (target < 50 ms)")
        return 0 if worst < 50 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
