"""``pacs-node retrieve``: fetch a study from a source and have it analysed on arrival.

With C-MOVE the source sends the study to the running node (``pacs-node serve``), which stores
it; with C-GET this command stores it itself. Either way the running node completes the study and
queues its job; the command waits (``--wait`` seconds) to print that job.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from typing import Any, TextIO

from pacs_node.assembly import StudyAssembler
from pacs_node.config import Settings
from pacs_node.db.retrievals import get_retrieval
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.retrieve.retriever import Fetched, Retriever
from pacs_node.service import DeferredQueue
from pacs_node.spool import Spool

POLL_SECONDS = 0.5


def add_parser(commands: Any) -> None:
    """Add ``retrieve`` to the ``pacs-node`` parser's subparsers."""
    parser = commands.add_parser(
        "retrieve", help="fetch a study from a source (C-FIND, C-MOVE/C-GET) and analyse it"
    )
    parser.add_argument("--source", required=True, help="the source's name (PACS_NODE_SOURCES)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--accession", help="the study's accession number")
    which.add_argument("--study-uid", help="the study's Study Instance UID")
    parser.add_argument(
        "--wait",
        type=float,
        default=60.0,
        help="seconds to wait for the running node to queue the job (0: do not wait)",
    )


def run(args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout) -> int:
    """Retrieve, then report each study's retrieval and job.

    Returns:
        0 when every study was fetched (or already held), 1 otherwise.

    Raises:
        NodeError: for a bad request, an unknown source or a study the source lacks.
        SourceUnavailableError: if the source cannot be queried.
    """
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    try:
        assembler = StudyAssembler.from_settings(settings, sessions, DeferredQueue())
        retriever = Retriever(
            settings,
            sessions,
            Spool(settings.spool_dir, settings.min_free_bytes),
            assembler.force_complete,
        )
        fetched = retriever.retrieve(
            args.source,
            accession=args.accession,
            study_uid=args.study_uid,
            requested_by=f"cli:{getpass.getuser()}",
            remote_address="local",
        )
        ok = True
        for item in fetched:
            ok &= item.outcome.succeeded
            job_id = item.job_id or _wait_for_job(sessions, item, args.wait)
            out.write(_describe(item, job_id) + "\n")
        return 0 if ok else 1
    finally:
        engine.dispose()


def _wait_for_job(sessions: Any, item: Fetched, seconds: float) -> int | None:
    """The job the study's completion created, once the running node has made it."""
    if not item.outcome.succeeded and not item.outcome.completed:
        return None
    deadline = time.monotonic() + seconds
    while True:
        with sessions() as session:
            info = get_retrieval(session, item.retrieval_id)
        if info is not None and info.job_id is not None:
            return info.job_id
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_SECONDS)


def _describe(item: Fetched, job_id: int | None) -> str:
    outcome = item.outcome
    line = (
        f"retrieval {item.retrieval_id}: {outcome.completed} instance(s) sent"
        + (f", {outcome.failed} failed" if outcome.failed else "")
        + (f" ({outcome.error})" if outcome.error else "")
    )
    if item.already_held:
        return f"{line}; already held, job {job_id if job_id is not None else '-'}"
    if job_id is None:
        return f"{line}; no job yet (is pacs-node serve running?)"
    return f"{line}; job {job_id}"
