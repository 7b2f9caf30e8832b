"""The ``pacs-node`` command.

Sub-commands that need the ML stack (``phantom``, ``train``, ``evaluate``) live in
``worker.commands.<name>`` and are loaded by name only when called, so the edge host runs
``serve`` without torch installed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from pacs_node import admin_cli
from pacs_node.config import Settings, load_settings
from pacs_node.errors import NodeError
from pacs_node.logs import configure_logging

LOG = logging.getLogger("pacs_node.cli")

# name -> (module, one-line help); each module has ``main(argv: list[str]) -> int``.
ML_COMMANDS = {
    "phantom": ("worker.commands.phantom", "write synthetic lumbar spine MRI studies"),
    "train": ("worker.commands.train", "train a model from a config file"),
    "evaluate": ("worker.commands.evaluate", "evaluate a checkpoint on held-out data"),
    "worker": ("worker.commands.worker", "run a Celery worker (--queues gpu,io)"),
    "demo": ("worker.commands.demo", "run the whole product on loopback with a phantom study"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pacs-node", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="TOML settings file (environment wins)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="run the DICOM SCP and study assembly")
    db = commands.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade", "check"])
    force = commands.add_parser("force-complete", help="complete a study now")
    force.add_argument("study_instance_uid")
    admin_cli.add_parsers(commands)
    for name, (_, help_text) in ML_COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def _serve(settings: Settings) -> int:
    from pacs_node.service import EdgeService

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    service = EdgeService.start(settings)
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
    from pacs_node.db import migrate
    from pacs_node.db.node_identity import read_node_identity
    from pacs_node.db.session import make_engine, make_session_factory
    from pacs_node.service import check_database

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
    from pacs_node.selection import load_rules
    from pacs_node.service import make_queue

    engine = make_engine(settings.database_url)
    assembler = StudyAssembler(
        make_session_factory(engine),
        load_rules(settings.selection_rules),
        make_queue(settings),
        quiet_seconds=settings.quiet_seconds,
        release_grace_seconds=settings.release_grace_seconds,
    )
    assembler.force_complete(study_uid)
    for done in assembler.tick():
        skip = "" if done.skip_reason is None else f" (not analysed: {done.skip_reason})"
        print(f"{done.study_instance_uid}: job {done.job_id} queued{skip}")
    engine.dispose()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pacs-node``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = _parser().parse_known_args(argv)
    if args.command in ML_COMMANDS:
        module = importlib.import_module(ML_COMMANDS[args.command][0])
        return int(module.main(rest))
    if rest:
        _parser().error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        settings = load_settings(args.config)
        configure_logging(settings.log_level, settings.log_format)
        if args.command == "serve":
            return _serve(settings)
        if args.command == "db":
            return _db(settings, args.action)
        if args.command == "force-complete":
            return _force_complete(settings, args.study_instance_uid)
        if args.command in admin_cli.COMMANDS:
            return admin_cli.run(args, settings)
    except (NodeError, OSError) as exc:
        print(f"pacs-node: error: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    raise SystemExit(main())
