"""Memory benchmark: peak RSS of ``pacs-node serve`` during a push, and a worker's RSS over studies.

* Ingest: ``pacs-node serve`` (SQLite, Redis broker, so no model in the process; quiet period of
  an hour, so no job runs) receives one series of ``--instances`` images of ``--size`` px from
  ``--senders`` storescu processes. Prints its RSS before the push, after it, and its peak
  (``VmHWM``).
* Worker: the production shape of ``bench/e2e`` (PostgreSQL, Redis, ``serve``, one Celery
  ``pacs-node worker`` process on both queues, storescp as the PACS, an MLLP receiver as the RIS);
  ``--studies`` phantom studies of ``--study-size`` are pushed one at a time, each waited for
  until ``done``. Prints the worker's RSS (the Celery process and its pool children) after the
  model is loaded and after every ``--every`` studies, its peak (of one process) and the RSS of
  each process at the end (the Celery parent first). Growth across studies is a leak; the peak
  is the working set of the model's warm-up or of a study.

Usage: ``python -m bench.memory.run [--instances 2000] [--size 256] [--senders 4] [--studies 20]
[--study-size small] [--every 5] [--json OUT]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.e2e.harness import run_stack
from bench.ingest.run import push
from models.paths import DEFAULT_CHECKPOINT
from tests.helpers.dicom_factory import StudySpec, write_study
from tests.helpers.node_process import run_node
from tests.helpers.services import Redis, start_postgres, start_redis
from worker.commands.phantom import write_phantom

MIB = 2**20


def memory_of(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a Celery worker and its pool processes)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(p for child in children for p in process_tree(int(child)))]


def tree_memory(pid: int) -> dict[str, int]:
    """RSS summed over the process tree; the largest peak of any one process in it."""
    each = [memory_of(p) for p in process_tree(pid)]
    return {"VmRSS": sum(m["VmRSS"] for m in each), "VmHWM": max(m["VmHWM"] for m in each)}


def ingest(work: Path, redis: Redis, instances: int, size: int, senders: int) -> dict[str, float]:
    """Serve's memory before, after and at its peak during one push (MiB)."""
    spec = StudySpec(seed=1, series=("T2 TSE SAG",), slices=instances, size=size)
    files = write_study(spec, work / "series")
    node_dir = work / "node"
    node_dir.mkdir()
    with run_node(
        node_dir, quiet_seconds="3600", log_level="WARNING", broker_url=redis.url
    ) as node:
        before = memory_of(node.process.pid)["VmRSS"]
        seconds = push(node.port, files, senders)
        after = memory_of(node.process.pid)
        stored = len(list((node_dir / "spool").rglob("*.dcm")))
    shutil.rmtree(node_dir)
    if stored != len(files):
        raise RuntimeError(f"serve stored {stored} of {len(files)}")
    return {
        "instances": len(files),
        "size_px": size,
        "senders": senders,
        "seconds": round(seconds, 1),
        "rss_before_mib": round(before / MIB, 1),
        "rss_after_mib": round(after["VmRSS"] / MIB, 1),
        "peak_rss_mib": round(after["VmHWM"] / MIB, 1),
    }


def worker(
    work: Path, redis: Redis, studies: list[Path], every: int
) -> dict[str, float | dict[str, float] | list[float]]:
    """The worker's RSS after loading the model and after every ``every`` studies, its largest
    peak of one process, and the RSS of each of its processes at the end (MiB)."""
    postgres = start_postgres()
    try:
        with run_stack(
            work / "stack",
            database_url=postgres.url(),
            broker_url=redis.url,
            checkpoint=DEFAULT_CHECKPOINT,
        ) as stack:
            process = stack.start_worker("gpu,io")
            stack.wait_models_loaded()
            rss = {"model loaded": round(tree_memory(process.pid)["VmRSS"] / MIB, 1)}
            started = time.monotonic()
            for count, study in enumerate(studies, start=1):
                stack.push(study)
                rows = stack.wait_jobs(["done", "failed"], count=count, timeout=600)
                if rows[-1][1] != "done":
                    raise RuntimeError(f"job {rows[-1]}\n{stack.logs()}")
                if count % every == 0:
                    rss[f"after study {count}"] = round(tree_memory(process.pid)["VmRSS"] / MIB, 1)
                    print(f"study {count}: {rss}", flush=True)
            peak = tree_memory(process.pid)["VmHWM"]
            each = [round(memory_of(p)["VmRSS"] / MIB, 1) for p in process_tree(process.pid)]
    finally:
        postgres.stop()
    return {
        "studies": len(studies),
        "seconds": round(time.monotonic() - started, 1),
        "rss_mib": rss,
        "peak_rss_mib": round(peak / MIB, 1),
        "rss_by_process_mib": each,
    }


def main(argv: list[str]) -> int:
    """Run both parts and print (and optionally write) the results as JSON."""
    parser = argparse.ArgumentParser(prog="bench.memory.run", description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256, help="image side of the pushed series")
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--study-size", default="small", choices=["standard", "small"])
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up the stack on kill
    report: dict[str, object] = {"checkpoint": DEFAULT_CHECKPOINT.name}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        redis = start_redis()
        try:
            if args.instances:
                report["serve_ingest"] = ingest(
                    work, redis, args.instances, args.size, args.senders
                )
                print(json.dumps(report["serve_ingest"]), flush=True)
            if args.studies:
                seeds = range(9100, 9100 + args.studies)
                folders = [
                    write_phantom(
                        seed, work / "studies" / str(seed), size=args.study_size
                    ).directory
                    for seed in seeds
                ]
                report["worker"] = worker(work, redis, folders, args.every)
        finally:
            redis.stop()
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
