"""The ``pacs-node`` command: where the edge (``pacs_node``) and the worker side are joined.

The edge's commands come from :mod:`pacs_node.cli`; this module adds the commands that need the ML
stack (each imported only when it runs, so ``serve`` on an edge host never loads torch) and hands
``serve`` the in-process worker of the embedded mode. It is the composition root: the only module
that wires the two packages together, by plain imports.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pacs_node import cli
from pacs_node.config import Settings, load_settings
from pacs_node.errors import NodeError
from pacs_node.logs import configure_logging
from pacs_node.service import ServiceQueue


def _phantom(argv: list[str]) -> int:
    from worker.commands import phantom

    return phantom.main(argv)


def _train(argv: list[str]) -> int:
    from worker.commands import train

    return train.main(argv)


def _evaluate(argv: list[str]) -> int:
    from worker.commands import evaluate

    return evaluate.main(argv)


def _worker(argv: list[str]) -> int:
    from worker.commands import worker

    return worker.main(argv)


def _demo(argv: list[str]) -> int:
    from worker.commands import demo

    return demo.main(argv)


def _embedded_worker(settings: Settings) -> ServiceQueue:
    from worker import embedded

    return embedded.start(settings)


ML_COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "phantom": ("write synthetic lumbar spine MRI studies", _phantom),
    "train": ("train a model from a config file", _train),
    "evaluate": ("evaluate a checkpoint on held-out data", _evaluate),
    "worker": ("run a Celery worker (--queues gpu,io)", _worker),
    "demo": ("run the whole product on loopback with a phantom study", _demo),
}
"""Commands that need the ML stack: name -> (help, runner of their own arguments)."""
READS_SETTINGS = ("worker", "demo")
"""ML commands that read the node's settings (the global ``--config`` goes on to them)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pacs-node",
        description="DICOM/PACS node for lumbar spine MRI AI: receive, analyse, return results.",
    )
    parser.add_argument(
        "--config", type=Path, help="TOML settings file (PACS_NODE_* environment variables win)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli.add_parsers(commands)
    for name, (help_text, _) in ML_COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pacs-node``; returns the exit status (2 for a problem to fix)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in ML_COMMANDS:
        if args.config is not None:
            if args.command not in READS_SETTINGS:
                parser.error(f"--config (the node's settings) does not apply to {args.command}")
            rest = ["--config", str(args.config), *rest]
        return ML_COMMANDS[args.command][1](rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        settings = load_settings(args.config)
        configure_logging(settings.log_level, settings.log_format)
        return cli.run(args, settings, _embedded_worker)
    except (NodeError, OSError) as exc:
        print(f"pacs-node: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
