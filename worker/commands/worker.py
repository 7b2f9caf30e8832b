"""``pacs-node worker``: a Celery worker for the chosen queues and device.

Usage: ``pacs-node worker [--config FILE] [--queues gpu,io] [--device auto|cpu|cuda:N]
[--concurrency N] [--pool prefork|solo|threads]``. Any number of workers on any number of hosts
share the database, the spool and the broker. Settings come from ``PACS_NODE_*`` as for ``serve``;
job-control limits from ``PACS_NODE_LEASE_SECONDS`` and friends (see
``pacs_node.db.leases.JobPolicy``).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path

from pacs_node.config import load_settings
from pacs_node.errors import NodeError
from pacs_node.logs import configure_logging
from pacs_node.queue import GPU_QUEUE, IO_QUEUE
from worker.celery_app import create_app
from worker.commands import summary
from worker.tasks import check_device

LOG = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pacs-node worker", description=summary(__doc__))
    p.add_argument("--config", type=Path, help="TOML settings file (environment wins)")
    p.add_argument("--queues", default=f"{GPU_QUEUE},{IO_QUEUE}", help="comma-separated queues")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: PACS_NODE_DEVICE)")
    p.add_argument("--concurrency", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--pool", choices=["prefork", "solo", "threads"], default="prefork")
    p.add_argument("--name", default=None, help="worker node name (default: queues@host)")
    return p


def main(argv: list[str]) -> int:
    """Run the worker until it is stopped; returns the exit status.

    Raises:
        Nothing: configuration errors and, for the gpu queue, a device this host lacks are
            reported and give status 2.
    """
    args = _parser().parse_args(argv)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = set(queues) - {GPU_QUEUE, IO_QUEUE}
    if not queues or unknown or args.concurrency < 1:
        print(
            f"--queues must name {GPU_QUEUE} and/or {IO_QUEUE}; --concurrency >= 1", file=sys.stderr
        )
        return 2
    try:
        settings = load_settings(args.config)
        if args.device:
            settings = settings.replace(device=args.device)
        if GPU_QUEUE in queues:
            check_device(settings.device, "--device" if args.device else "PACS_NODE_DEVICE")
        app = create_app(settings, warm_model=GPU_QUEUE in queues)
    except (NodeError, ValueError) as exc:
        print(f"pacs-node worker: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    for warning in settings.doubts():
        LOG.warning("%s", warning)
    name = args.name or f"{'-'.join(queues)}@{socket.gethostname()}:{os.getpid()}"
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(queues),
            "--concurrency",
            str(args.concurrency),
            "--pool",
            args.pool,
            "--hostname",
            name,
            "--loglevel",
            settings.log_level,
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
