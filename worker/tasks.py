"""Thin Celery tasks: they take a job ID and call :class:`worker.runner.JobRunner`.

Each worker process builds its own runner (database engine, spool, model) after the fork, on
``worker_process_init`` or on first use, and keeps the model loaded across jobs. Nothing touches
CUDA in the parent process.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from pacs_node.config import Settings
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.errors import StartupError
from pacs_node.queue import ANALYSE_TASK, DELIVER_TASK, CeleryJobQueue
from pacs_node.spool import Spool
from worker.pipeline import Predictor
from worker.runner import JobRunner

LOG = logging.getLogger(__name__)

TIME_LIMIT_MARGIN_SECONDS = 60.0
CPU_THREADS = 1
"""Torch threads of a worker process on CPU. A worker shares its cores with the node (SCP, API,
database) and with other worker processes; with more than one thread, each of the many short
element-wise steps of a study (resampling 20 label channels to 512 x 512 per slice, then taking
the label) waits for the slowest thread, and a busy core made a study's inference 3-4 times
slower than with one thread (``bench/e2e``). Scale a host by worker processes
(``--concurrency``) instead."""


def check_device(device: str, setting: str = "PACS_NODE_DEVICE") -> None:
    """Check that this host has the CUDA device ``device`` names (``cpu`` and ``auto`` always
    pass). Counts devices through NVML where it can, so CUDA stays uninitialised for a fork.

    Args:
        device: A device of valid syntax (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        setting: The name the device was given by, for the error.

    Raises:
        StartupError: naming ``setting`` if the device is not on this host.
    """
    if device in ("auto", "cpu"):
        return
    import torch

    count = torch.cuda.device_count()
    if (torch.device(device).index or 0) >= count:
        found = f"{count} CUDA device(s)" if count else "no CUDA device"
        raise StartupError(f"{setting}: {device} is not available on this host ({found})")


def load_predictor(settings: Settings, *, warm_up: bool = True) -> Predictor:
    """Load the configured checkpoint on the configured device (imports torch here only) and,
    with ``warm_up``, run it on a synthetic study so that the first job runs as fast as the later
    ones (for a model loaded before any job; a model loaded by its first job gains nothing).

    On CPU, torch runs one thread in this process (:data:`CPU_THREADS`) unless
    ``OMP_NUM_THREADS`` says otherwise; call this from the thread that runs the jobs.

    Raises:
        FileNotFoundError: if the checkpoint does not exist.
        RuntimeError: if the device is unavailable.
    """
    import torch

    from models.inference import Predictor as ModelPredictor

    predictor = ModelPredictor.load(settings.model, settings.device)
    if predictor.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(CPU_THREADS)
    if warm_up:
        predictor.warm_up()
    return predictor


class ProcessRunner:
    """One :class:`JobRunner` per OS process, built lazily (so after any fork)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pid: int | None = None
        self._runner: JobRunner | None = None
        self._lock = threading.Lock()

    def get(self) -> JobRunner:
        """This process's runner."""
        with self._lock:
            if self._runner is None or self._pid != os.getpid():
                settings = self._settings
                self._runner = JobRunner(
                    settings=settings,
                    sessions=make_session_factory(make_engine(settings.database_url)),
                    spool=Spool(settings.spool_dir),
                    queue=CeleryJobQueue(settings.broker_url),
                    predictor_factory=lambda: load_predictor(settings),
                )
                self._pid = os.getpid()
            return self._runner


def register_tasks(app: Celery, settings: Settings, *, warm_model: bool = False) -> ProcessRunner:
    """Register ``analyse_study`` (queue gpu) and ``deliver_results`` (queue io) on ``app``.

    With ``warm_model`` each worker process loads the model as soon as it starts (after the
    fork), so the first job does not pay for it.

    Raises:
        Nothing.
    """
    runners = ProcessRunner(settings)
    time_limit = settings.policy.job_timeout_seconds + TIME_LIMIT_MARGIN_SECONDS

    @app.task(name=ANALYSE_TASK, acks_late=True, time_limit=time_limit)
    def analyse_study(job_id: int) -> None:
        runners.get().analyse(int(job_id))

    @app.task(name=DELIVER_TASK, acks_late=True, time_limit=time_limit)
    def deliver_results(job_id: int) -> None:
        runners.get().deliver(int(job_id))

    def warm(**_: Any) -> None:
        try:
            runners.get().predictor()
        except Exception:
            LOG.exception("could not load the model; jobs will fail until it loads")

    if warm_model:
        worker_process_init.connect(warm, weak=False)
    return runners
