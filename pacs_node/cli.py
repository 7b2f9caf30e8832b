"""The edge's commands of ``pacs-node``: serve, db, force-complete, retrieve, export, jobs and
tokens.

The ``pacs-node`` command itself is :mod:`worker.main`, which adds the commands that need the ML
stack and, for the embedded mode, the in-process worker; this package never imports either.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from pacs_node import admin_cli
from pacs_node.config import Settings
from pacs_node.export import command as export_command
from pacs_node.retrieve import command as retrieve_command
from pacs_node.service import EmbeddedWorkerStarter

LOG = logging.getLogger(__name__)

EDGE_COMMANDS = ("serve", "db", "force-complete", "retrieve", "export", *admin_cli.COMMANDS)


def add_parsers(commands: Any) -> None:
    """Add the edge's sub-commands to the ``pacs-node`` parser's subparsers."""
    commands.add_parser("serve", help="run the DICOM SCP, study assembly and the admin API")
    db = commands.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade", "check"])
    force = commands.add_parser("force-complete", help="complete a study now")
    force.add_argument("study_instance_uid")
    retrieve_command.add_parser(commands)
    export_command.add_parser(commands)
    admin_cli.add_parsers(commands)


def run(
    args: argparse.Namespace, settings: Settings, embedded_worker: EmbeddedWorkerStarter
) -> int:
    """Run an edge command.

    Raises:
        NodeError: for a problem the user can fix (a setting, a peer, a missing row).
        OSError: if a file or port cannot be used.
    """
    if args.command == "serve":
        return _serve(settings, embedded_worker)
    if args.command == "db":
        return _db(settings, args.action)
    if args.command == "force-complete":
        return _force_complete(settings, args.study_instance_uid)
    if args.command == "retrieve":
        return retrieve_command.run(args, settings)
    if args.command == "export":
        return export_command.run(args, settings)
    return admin_cli.run(args, settings)


def _serve(settings: Settings, embedded_worker: EmbeddedWorkerStarter) -> int:
    from pacs_node.service import EdgeService

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    service = EdgeService.start(settings, embedded_worker=embedded_worker)
    try:
        # wake up now and then: a signal delivered to another thread only sets a flag, which
        # the main thread acts on when it next runs Python code
        while not stop.wait(timeout=1.0):
            pass
    finally:
        LOG.info("shutting down")
        service.stop()
    return 0


def _db(settings: Settings, action: str) -> int:
    """``db upgrade`` / ``db check``, then a summary: the schema revision and node identity."""
    from pacs_node.checks import check_database
    from pacs_node.db import migrate
    from pacs_node.db.node_identity import read_node_identity
    from pacs_node.db.session import make_engine, make_session_factory

    check_database(settings.database_url)
    getattr(migrate, action)(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            identity = read_node_identity(session)
    finally:
        engine.dispose()
    verb = "up to date" if action == "upgrade" else "matches the tables"
    print(f"schema {verb} (revision {migrate.current_revision(settings.database_url)})")
    print(f"node identity {identity.node_id} (created {identity.created_at:%Y-%m-%d %H:%M} UTC)")
    return 0


def _force_complete(settings: Settings, study_uid: str) -> int:
    from pacs_node.assembly import StudyAssembler
    from pacs_node.db.session import make_engine, make_session_factory
    from pacs_node.service import make_queue

    engine = make_engine(settings.database_url)
    assembler = StudyAssembler.from_settings(
        settings, make_session_factory(engine), make_queue(settings)
    )
    assembler.force_complete(study_uid)
    for done in assembler.tick():
        skip = "" if done.skip_reason is None else f" (not analysed: {done.skip_reason})"
        print(f"{done.study_instance_uid}: job {done.job_id} queued{skip}")
    engine.dispose()
    return 0
