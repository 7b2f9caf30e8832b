"""End-to-end benchmark: study complete -> results stored at the PACS and ACKed by the RIS.

Runs the production shape on loopback (PostgreSQL, Redis, ``pacs-node serve``, Celery
``pacs-node worker`` processes, DCMTK storescp as the PACS, an MLLP receiver as the RIS) and
pushes phantom studies with storescu.

* Latency: studies one at a time through one worker; per study the time from the job's creation
  (the study complete) to ``done`` (last SEG/SR stored by the PACS and the ORU ACKed), split by
  stage from the job's events: queue wait, load, inference, encode, deliver, notify. Median and
  p95.
* Throughput: a batch of studies pushed at once, two workers; studies per minute from the first
  job created to the last done.

Usage: ``python -m bench.e2e.run [--studies 5] [--batch 6] [--size standard] [--device cpu]
[--checkpoint PATH] [--json OUT]`` (``--batch 0``: latency only). Without ``--checkpoint`` the
shipped checkpoint is used when present, else a randomly initialised one of the default
architecture (same compute).
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import statistics
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench.e2e.harness import Stack, make_random_checkpoint, run_stack
from tests.helpers.services import start_postgres, start_redis
from worker.commands.phantom import write_phantom

STAGES = ("queue", "load", "inference", "encode", "deliver", "notify", "total")


def _parse_time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def job_stages(stack: Stack, job_id: int) -> dict[str, float]:
    """Stage seconds of one done job, from its events."""
    events = stack.query(
        "SELECT state, at, details FROM job_events WHERE job_id = :id ORDER BY id", id=job_id
    )
    at = {state: _parse_time(when) for state, when, _ in events}
    timings: dict[str, float] = {}
    for _, _, details in events:
        details = json.loads(details) if isinstance(details, str) else details
        timings.update((details or {}).get("timings", {}))
    created = at["queued"]
    timings["queue"] = (at["running"] - created).total_seconds()
    timings["total"] = (at["done"] - created).total_seconds()
    return {stage: float(timings[stage]) for stage in STAGES}


def summarise(samples: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Median and p95 per stage."""
    out = {}
    for stage in STAGES:
        values = sorted(s[stage] for s in samples)
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        out[stage] = {"median": statistics.median(values), "p95": p95}
    return out


def _database(postgres_url: str, name: str) -> str:
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


def latency(
    work: Path, postgres: Any, broker: str, checkpoint: Path, studies: list[Path], device: str
) -> list[dict[str, float]]:
    """One worker, one study at a time."""
    samples = []
    with run_stack(
        work / "latency",
        database_url=_database(postgres.url(), "latency"),
        broker_url=broker,
        checkpoint=checkpoint,
        settings={"DEVICE": device},
    ) as stack:
        stack.start_worker("gpu,io", "--device", device)
        stack.wait_models_loaded()
        for count, study in enumerate(studies, start=1):
            stack.push(study)
            rows = stack.wait_jobs(["done", "failed"], count=count, timeout=600)
            job_id, state, reason = rows[-1]
            if state != "done":
                raise RuntimeError(f"job {job_id} {state}: {reason}\n{stack.logs()}")
            samples.append(job_stages(stack, job_id))
            print(f"study {count}: {samples[-1]}", flush=True)
    return samples


def throughput(
    work: Path, postgres: Any, broker: str, checkpoint: Path, studies: list[Path], device: str
) -> dict[str, float]:
    """Two workers, a batch pushed at once."""
    with run_stack(
        work / "throughput",
        database_url=_database(postgres.url(), "throughput"),
        broker_url=broker,
        checkpoint=checkpoint,
        settings={"DEVICE": device},
    ) as stack:
        for _ in range(2):
            stack.start_worker("gpu,io", "--device", device)
        stack.wait_models_loaded(2)
        for study in studies:
            stack.push(study)
        stack.wait_jobs(["done", "failed"], count=len(studies), timeout=1200)
        ((first, last, done),) = stack.query(
            "SELECT (SELECT min(created_at) FROM jobs), "
            "(SELECT max(at) FROM job_events WHERE state IN ('done', 'failed')), "
            "(SELECT count(*) FROM jobs WHERE state = 'done')"
        )
        seconds = (_parse_time(last) - _parse_time(first)).total_seconds()
    return {
        "studies": len(studies),
        "done": int(done),
        "seconds": seconds,
        "studies_per_minute": 60 * len(studies) / seconds,
    }


def main(argv: list[str]) -> int:
    """Run the benchmark and print (and optionally write) the results as JSON."""
    parser = argparse.ArgumentParser(prog="bench.e2e.run", description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=5)
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--size", default="standard", choices=["standard", "small"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up the stack on kill
    from models.inference import DEFAULT_CHECKPOINT

    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.exists() else None
    kind = "given" if args.checkpoint else ("shipped" if checkpoint else "random, default arch")
    if checkpoint is None:
        checkpoint = make_random_checkpoint(work / "random.safetensors", tiny=False)
    seeds = range(9000, 9000 + args.studies + args.batch)
    folders = [
        write_phantom(seed, work / "studies" / str(seed), size=args.size).directory
        for seed in seeds
    ]
    postgres, redis = start_postgres(), start_redis()
    try:
        samples = latency(
            work, postgres, redis.url, checkpoint, folders[: args.studies], args.device
        )
        rate = (
            throughput(work, postgres, redis.url, checkpoint, folders[args.studies :], args.device)
            if args.batch
            else None
        )
    finally:
        postgres.stop()
        redis.stop()
    report = {
        "device": args.device,
        "gpu": _gpu_name(args.device),
        "cpu": platform.processor() or platform.machine(),
        "checkpoint": kind,
        "size": args.size,
        "latency_seconds": summarise(samples),
        "samples": samples,
        "throughput_two_workers": rate,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def _gpu_name(device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return str(torch.cuda.get_device_name(0))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
