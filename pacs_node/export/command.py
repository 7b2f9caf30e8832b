"""``pacs-node export (--jobs 1,2,5 | --since 2026-01-01) --out DIR``: a de-identified research
export of analysed studies (images, SEG, SR, results and feedback), audited.

The export is written into a hidden folder beside ``--out`` and renamed when complete, so a
failed export leaves nothing half-written behind.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from pacs_node.config import Settings
from pacs_node.db.admin_actions import record_audit
from pacs_node.db.feedback import FeedbackEntry, feedback_for_study
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.errors import NodeError
from pacs_node.export.deidentify import Deidentifier
from pacs_node.export.selection import ExportJob, select_named, select_since
from pacs_node.export.writer import ExportCounts, write_export
from pacs_node.spool import Spool

LOG = logging.getLogger(__name__)
CLI_ADDRESS = "local"


class ExportArgumentError(NodeError, ValueError):
    """An argument of ``export`` is malformed, or ``--out`` is not empty."""


def add_parser(commands: Any) -> None:
    """Add ``export`` to the ``pacs-node`` parser's subparsers."""
    parser = commands.add_parser(
        "export", help="write a de-identified research export of analysed studies"
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--jobs", help="comma-separated job ids (each a study's analysis)")
    which.add_argument(
        "--since", help="the latest analysis of each study with a job created since (ISO date)"
    )
    parser.add_argument("--out", type=Path, required=True, help="a new or empty folder")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``export``.

    Raises:
        NodeError: for a malformed argument, a non-empty ``--out`` or jobs that cannot be
            exported.
        OSError: if a file cannot be read or written.
    """
    select = _selection(args)
    out = _empty_folder(args.out)
    engine = make_engine(settings.database_url)
    try:
        sessions = make_session_factory(engine)
        with sessions() as session:
            jobs = select(session)
            feedback = _feedback(session, jobs)
        counts = _write(jobs, feedback, Spool(settings.spool_dir), out)
        with sessions.begin() as session:
            record_audit(
                session,
                actor=f"cli:{getpass.getuser()}",
                action="export",
                target=None,
                remote_address=CLI_ADDRESS,
                details=asdict(counts),
            )
    finally:
        engine.dispose()
    LOG.info(
        "export: %d studies, %d images; %d left out for burned-in annotation",
        counts.studies,
        counts.images,
        counts.burned_in_left_out,
    )
    print(f"exported: studies={counts.studies} images={counts.images}")
    return 0


def parse_job_ids(text: str) -> list[int]:
    """``1,2,5`` as job ids.

    Raises:
        ExportArgumentError: if it is not a list of positive integers.
    """
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        ids = []
    if not ids or min(ids) < 1:
        raise ExportArgumentError("--jobs: give job ids separated by commas, e.g. 1,2,5")
    return ids


def parse_since(text: str) -> datetime:
    """An ISO date or date-time, naive ones in UTC.

    Raises:
        ExportArgumentError: if it is not one.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ExportArgumentError("--since: give an ISO date, e.g. 2026-01-01") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _empty_folder(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportArgumentError("--out exists and is not an empty folder")
    return out


def _selection(args: argparse.Namespace) -> Callable[[Session], list[ExportJob]]:
    """The selection the arguments ask for, checked before the database is opened."""
    if args.jobs is not None:
        return partial(select_named, job_ids=parse_job_ids(args.jobs))
    return partial(select_since, since=parse_since(args.since))


def _feedback(session: Session, jobs: list[ExportJob]) -> dict[int, list[FeedbackEntry]]:
    return {job.job_id: feedback_for_study(session, study_id=job.study_id) for job in jobs}


def _write(
    jobs: list[ExportJob], feedback: dict[int, list[FeedbackEntry]], spool: Spool, out: Path
) -> ExportCounts:
    """Write into a folder beside ``out``, then rename it to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        counts = write_export(jobs, feedback, spool, staging, Deidentifier())
        staging.replace(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return counts
