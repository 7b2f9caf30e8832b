"""The whole product on loopback, as a deployment runs it; shared by the benchmark and the tests.

:class:`Stack` runs ``pacs-node serve`` and any number of ``pacs-node worker`` processes against a
database and a Redis broker (or the embedded mode), a DCMTK ``storescp`` as the PACS and an MLLP
receiver as the RIS. Studies are pushed with DCMTK ``storescu``. Every process is stopped by its
PID (process group) when the stack closes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, text

from pacs_node.hl7.receiver import MllpReceiver
from tests.helpers.node_process import (
    ExitedBeforeListeningError,
    start_listening,
    wait_for_listener,
)
from tests.helpers.services import free_port

if TYPE_CHECKING:
    from models.network import LumbarNet

STORESCU, STORESCP = "/usr/bin/storescu", "/usr/bin/storescp"
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
NODE = [sys.executable, "-m", "worker.main"]
PACS_AE = "PACS"
FAST_POLICY = {
    "LEASE_SECONDS": "3",
    "REQUEUE_AFTER_SECONDS": "2",
    "RECONCILE_INTERVAL_SECONDS": "0.5",
    "DELIVERY_BACKOFF_SECONDS": "1",
    "DELIVERY_BACKOFF_MAX_SECONDS": "2",
    "DELIVERY_ATTEMPT_SECONDS": "30",
}
"""Job-control limits short enough for tests (PACS_NODE_* names without the prefix)."""


def make_random_checkpoint(path: Path, *, tiny: bool = True, seed: int = 0) -> Path:
    """Write a randomly initialised checkpoint of the real network.

    ``tiny`` (tests): 64 px input and the tiny encoder, fast on CPU. Otherwise the default
    architecture (``models.config.ModelConfig()``), for timings when no trained checkpoint is
    shipped. It segments nonsense (never background) but exercises the whole path; its thresholds
    make no abnormality call, so reports stay short.

    Raises:
        OSError: if the file cannot be written.
    """
    import torch

    from models.checkpoint import CheckpointMeta, save_checkpoint
    from models.config import ModelConfig
    from models.labels import load_label_scheme
    from models.network import LumbarNet
    from models.prompts import PromptBank

    scheme = load_label_scheme()
    torch.manual_seed(seed)
    config = (
        ModelConfig(
            tiny=True, img_size=64, decoder_channels=16, embed_dim=16, text_dim=32, pool_heads=2
        )
        if tiny
        else ModelConfig()
    )
    bank = PromptBank(
        structures=torch.randn(config.num_structures, 3, config.text_dim),
        abnormalities=torch.randn(len(scheme.abnormalities), 3, config.text_dim),
        normal=torch.randn(3, config.text_dim),
    )
    discs = tuple(d.value for d in scheme.discs)
    meta = CheckpointMeta(
        config=config,
        model_version="tiny-random" if tiny else "random",
        disc_values=discs,
        level_names=tuple(d.name for d in scheme.discs),
        abnormality_keys=tuple(a.key for a in scheme.abnormalities),
        thresholds={a.key: 2.0 for a in scheme.abnormalities},
    )
    model = LumbarNet(config, bank, discs)
    _never_background(model)
    save_checkpoint(model, meta, path)
    return path


def _never_background(model: LumbarNet) -> None:
    """Make the random network pick structures, never background.

    At their initial statistics the decoder's BatchNorm layers give nearly the same pixel
    embedding everywhere, so the head's biases decide and one class wins the whole image, often
    background: a study with nothing to report. The running statistics are set from a few random
    images, and a zero background query (cosine 0), no biases and a large scale let the
    differences between pixels choose among the structures.
    """
    import torch

    from models.heads import TextGuidedHead

    head = model.seg_head
    if not isinstance(head, TextGuidedHead):
        raise TypeError("the random checkpoint uses the text-guided head")
    generator = torch.Generator().manual_seed(0)
    size, channels = model.config.img_size, model.config.in_chans
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None  # a cumulative average over the calls below
        model.train()
        for _ in range(4):
            model.segment(torch.rand(4, channels, size, size, generator=generator))
        model.eval()
        head.background.zero_()
        head.bias.weight.zero_()
        head.bias.bias.zero_()
        head.log_scale.fill_(8.0)


@dataclass
class Pacs:
    """A DCMTK storescp that stores what it receives in ``folder``."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Pacs:
        """Start listening (again, after :meth:`stop`) on :attr:`port`.

        Raises:
            ExitedBeforeListeningError: if storescp ends without listening (its port is taken).
            TimeoutError: if storescp does not listen in time.
        """
        self.process = self._spawn()
        wait_for_listener(self.process, self.port)
        return self

    def start_on_free_port(self) -> Pacs:
        """Start listening on a free port, chosen anew if another process takes it first."""

        def spawn(port: int) -> subprocess.Popen[bytes]:
            self.port = port
            return self._spawn()

        self.process, _ = start_listening(spawn)
        return self

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder.parent / "storescp.log").open("ab") as log:
            return subprocess.Popen(
                [STORESCP, "-aet", PACS_AE, "-od", str(self.folder), str(self.port)],
                env=DCMTK_ENV,
                stdout=log,
                stderr=log,
            )

    def stop(self) -> None:
        """Stop the PACS."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def files(self) -> list[Path]:
        """Objects received so far."""
        return sorted(p for p in self.folder.iterdir() if p.is_file())


@dataclass
class Stack:
    """A running node with its peers; see :func:`run_stack`."""

    workdir: Path
    env: dict[str, str]
    database_url: str
    pacs: Pacs
    ris: MllpReceiver
    serve: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _engine: Engine | None = None

    @property
    def port(self) -> int:
        """The DICOM port serve listens on (chosen by :meth:`start_serve`)."""
        return int(self.env["PACS_NODE_PORT"])

    @property
    def engine(self) -> Engine:
        """An engine on the node's database (for checks)."""
        if self._engine is None:
            self._engine = create_engine(self.database_url)
        return self._engine

    def _spawn(self, args: Sequence[str], log_name: str) -> subprocess.Popen[bytes]:
        with (self.workdir / log_name).open("ab") as log:
            return subprocess.Popen(
                [*NODE, *args], env=self.env, stdout=log, stderr=log, start_new_session=True
            )

    def start_serve(self) -> None:
        """Start ``pacs-node serve`` and wait until it listens; if a parallel test took its
        ports before it bound them, start it again on others.

        Raises:
            RuntimeError: with the logs, if serve ends without listening.
        """

        def spawn(port: int) -> subprocess.Popen[bytes]:
            self.env.update(PACS_NODE_PORT=str(port), PACS_NODE_API_PORT=str(free_port()))
            return self._spawn(["serve"], "serve.log")

        try:
            self.serve, _ = start_listening(spawn)
        except ExitedBeforeListeningError as exc:
            raise RuntimeError(f"serve {exc}\n{self.logs()}") from exc

    def start_worker(self, queues: str = "gpu,io", *extra: str) -> subprocess.Popen[bytes]:
        """Start a ``pacs-node worker`` process (its own process group)."""
        worker = self._spawn(
            ["worker", "--queues", queues, "--device", "cpu", *extra],
            f"worker-{len(self.workers)}.log",
        )
        self.workers.append(worker)
        return worker

    def wait_models_loaded(self, count: int = 1, timeout: float = 300.0) -> None:
        """Wait until ``count`` worker processes have loaded the model.

        Raises:
            TimeoutError: if they have not in time.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            logs = [p.read_text(errors="replace") for p in self.workdir.glob("worker-*.log")]
            if sum(log.count("model loaded in") for log in logs) >= count:
                return
            time.sleep(0.2)
        raise TimeoutError(f"{count} workers did not load the model\n{self.logs()}")

    def kill_worker(self, worker: subprocess.Popen[bytes]) -> None:
        """SIGKILL a worker and its children (its process group)."""
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        self.workers.remove(worker)

    def push(self, folder: Path, calling_ae: str = "MODALITY") -> None:
        """Send every DICOM file under ``folder`` with DCMTK storescu.

        Raises:
            RuntimeError: if storescu fails.
        """
        files = sorted(str(p) for p in folder.rglob("*.dcm"))
        sent = subprocess.run(
            [
                STORESCU,
                "-aet",
                calling_ae,
                "-aec",
                "LUMBAR_NODE",
                "127.0.0.1",
                str(self.port),
                *files,
            ],
            env=DCMTK_ENV,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if sent.returncode != 0:
            raise RuntimeError(f"storescu failed: {sent.stderr}")

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """Run a read query on the node's database."""
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]

    def wait_jobs(
        self, states: Sequence[str], count: int = 1, timeout: float = 120.0
    ) -> list[tuple[Any, ...]]:
        """Wait until ``count`` jobs are in one of ``states``; return (id, state, reason) rows.

        Raises:
            TimeoutError: with the job states and the logs' tails, if that does not happen.
        """
        deadline = time.monotonic() + timeout
        rows: list[tuple[Any, ...]] = []
        while time.monotonic() < deadline:
            rows = self.query("SELECT id, state, reason FROM jobs ORDER BY id")
            if sum(1 for r in rows if r[1] in states) >= count:
                return rows
            time.sleep(0.2)
        raise TimeoutError(f"jobs {rows} did not reach {states}\n{self.logs()}")

    def logs(self, tail: int = 3000) -> str:
        """The tails of every log of the stack (for failure messages)."""
        parts = []
        for log in sorted(self.workdir.glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop every process of the stack."""
        for process in [*self.workers, *([self.serve] if self.serve else [])]:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
        self.workers.clear()
        self.serve = None
        self.pacs.stop()
        self.ris.stop()
        if self._engine is not None:
            self._engine.dispose()


@contextmanager
def run_stack(
    workdir: Path,
    *,
    database_url: str,
    broker_url: str,
    checkpoint: Path | None,
    ris_answers: Sequence[str | None] = (),
    start_pacs: bool = True,
    settings: dict[str, str] | None = None,
    policy: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Upgrade the database, start the PACS, the RIS and ``serve`` (workers are started by the
    caller for a broker URL; the embedded mode needs none).

    Raises:
        subprocess.CalledProcessError: if the database upgrade fails.
        TimeoutError: if a server does not listen in time.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    pacs = Pacs(workdir / "pacs", free_port())
    ris = MllpReceiver(ris_answers).start()
    stack: Stack | None = None
    try:
        if start_pacs:
            pacs.start_on_free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PACS_NODE_")}
        values = {
            "SPOOL_DIR": str(workdir / "spool"),
            "DATABASE_URL": database_url,
            "BROKER_URL": broker_url,
            "MIN_FREE_BYTES": "0",
            "QUIET_SECONDS": "3",
            "RELEASE_GRACE_SECONDS": "0.5",
            "DESTINATIONS": f"{PACS_AE}@127.0.0.1:{pacs.port}",
            "HL7_ENDPOINT": f"127.0.0.1:{ris.port}",
            "DEVICE": "cpu",
            **FAST_POLICY,
            **(policy or {}),
            **(settings or {}),
        }
        if checkpoint is not None:
            values["MODEL"] = str(checkpoint)
        env.update({f"PACS_NODE_{k}": v for k, v in values.items()})
        env.setdefault("HF_HUB_OFFLINE", "1")
        subprocess.run([*NODE, "db", "upgrade"], env=env, check=True, capture_output=True)
        stack = Stack(workdir, env, database_url, pacs, ris)
        stack.start_serve()
        yield stack
    finally:
        if stack is not None:
            stack.stop()
        else:
            pacs.stop()
            ris.stop()
