"""``pacs-node demo``: the whole product on loopback, in one command, on embedded defaults.

It writes a phantom lumbar study, starts the node (SQLite, in-process worker, the shipped
checkpoint unless ``PACS_NODE_MODEL`` names another), a DICOM receiver standing in for the PACS
and an MLLP receiver standing in for the RIS, pushes the study over a real C-STORE association,
waits for the job, and prints the job, its stage timings, the per-level findings read back from
the returned SR against the phantom's ground truth, and the paths of the returned SEG, SR and an
overlay preview. Everything is kept in a new folder ``var/demo/<time>`` (``--keep DIR`` names
another, empty one), which it names before it starts. Exit status 0 only when the SEG and SR
reached the PACS and the RIS acknowledged the ORU^R01.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.inference import DEFAULT_CHECKPOINT
from pacs_node.api.overlay import render_overlay_png
from pacs_node.config import Settings, load_settings
from pacs_node.db import migrate, queries
from pacs_node.db.session import make_session_factory
from pacs_node.db.tables import Job, Study
from pacs_node.destinations import Destination
from pacs_node.dispatch.dicom import send_files
from pacs_node.domain import JobState, ResultKind
from pacs_node.errors import NodeError
from pacs_node.hl7.receiver import MllpReceiver
from pacs_node.results.sr_findings import findings_from_sr
from pacs_node.service import EdgeService
from worker.commands import summary
from worker.commands.phantom import PRESETS, write_phantom
from worker.demo_pacs import DemoPacs
from worker.demo_report import compare_findings, write_summary
from worker.embedded import start as start_embedded_worker
from worker.phantom import WrittenStudy
from worker.phantom.truth import read_truth

CALLING_AE = "DEMO_MODALITY"
QUIET_SECONDS = 5.0
POLL_SECONDS = 0.2


class DemoError(NodeError):
    """The demo could not run (setup, push, or the job did not finish in time)."""


class Progress:
    """Timestamped progress lines on ``out``."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        """Print one progress line."""
        self.out.write(f"[{time.monotonic() - self.started:6.1f} s] {message}\n")
        self.out.flush()


def demo_settings(base: Settings, workdir: Path, pacs_port: int, ris_port: int) -> Settings:
    """Embedded-mode settings for the demo: loopback, free ports, everything under ``workdir``.

    The model and device come from ``base`` (so ``PACS_NODE_MODEL`` / ``PACS_NODE_DEVICE`` apply).

    Raises:
        ConfigError: if the result is invalid.
    """
    return base.replace(
        host="127.0.0.1",
        port=0,
        api_host="127.0.0.1",
        api_port=0,
        allowed_aes=("*",),
        tls_cert=None,
        tls_key=None,
        tls_ca=None,
        spool_dir=workdir / "spool",
        database_url=f"sqlite:///{workdir / 'pacs-node.db'}",
        broker_url="embedded",
        destinations=(Destination.dicom("DEMO_PACS", "127.0.0.1", pacs_port),),
        hl7_endpoint=Destination.hl7("127.0.0.1", ris_port),
        quiet_seconds=QUIET_SECONDS,
        release_grace_seconds=0.5,
        min_free_bytes=0,
        selection_rules=None,
    )


@contextmanager
def _log_to_file(path: Path) -> Iterator[None]:
    """Send the node's logs to ``path`` (the console shows progress only) until exit."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        handler.close()


def _push(study: WrittenStudy, port: int, ae_title: str) -> int:
    paths = [path for series in study.series for path in series.paths]
    outcomes = send_files(
        Destination.dicom(ae_title, "127.0.0.1", port), paths, calling_ae=CALLING_AE
    )
    failed = [o for o in outcomes if not o.delivered]
    if failed:
        raise DemoError(f"{len(failed)} of {len(paths)} instances refused: {failed[0].error}")
    return len(paths)


def _wait_done(
    sessions: sessionmaker[Session], study_uid: str, timeout: float, progress: Progress
) -> int:
    """Print each state the study's job enters; return its ID once it is final."""
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        with sessions() as session:
            row = session.execute(
                select(Job.id, Job.state, Job.reason)
                .join(Study)
                .where(Study.study_instance_uid == study_uid)
                .order_by(Job.id.desc())
                .limit(1)
            ).first()
        if row is not None:
            job_id, state, reason = row
            if state != seen:
                progress(f"job {job_id}: {state}" + (f" ({reason})" if reason else ""))
                seen = state
            if JobState(state).terminal:
                return int(job_id)
        time.sleep(POLL_SECONDS)
    raise DemoError(f"the job did not finish within {timeout:.0f} s (last state: {seen or '-'})")


def run_demo(
    workdir: Path, *, size: str, seed: int, timeout: float, out: TextIO, base: Settings
) -> int:
    """Run the demo in ``workdir``; print progress and the summary to ``out``.

    Returns:
        0 when the SEG and SR reached the PACS and the ORU^R01 was acknowledged, else 1.

    Raises:
        DemoError: if the checkpoint is missing, the push fails or the job does not finish.
        OSError: if a port cannot be bound or a file cannot be written.
    """
    checkpoint = base.model or DEFAULT_CHECKPOINT
    if not checkpoint.is_file():
        raise DemoError(f"no model checkpoint at {checkpoint} (set PACS_NODE_MODEL)")
    with _log_to_file(workdir / "node.log"):
        return _run(workdir, checkpoint, size=size, seed=seed, timeout=timeout, out=out, base=base)


def _run(
    workdir: Path,
    checkpoint: Path,
    *,
    size: str,
    seed: int,
    timeout: float,
    out: TextIO,
    base: Settings,
) -> int:
    progress = Progress(out)
    progress(f"writing a {size} phantom lumbar study (seed {seed})")
    study = write_phantom(seed, workdir / "study", size=size)
    files = sum(len(s.paths) for s in study.series)
    progress(f"  {len(study.series)} series, {files} instances in {study.directory}")
    pacs = DemoPacs(workdir / "pacs").start()
    ris = MllpReceiver().start()
    try:
        settings = demo_settings(base, workdir, pacs.port, ris.port)
        progress(f"PACS {pacs.ae_title} on 127.0.0.1:{pacs.port}, RIS (MLLP) on :{ris.port}")
        migrate.upgrade(settings.database_url)
        service = EdgeService.start(settings, embedded_worker=start_embedded_worker)
        try:
            progress(
                f"node {settings.ae_title} on 127.0.0.1:{service.scp.port}, admin API on "
                f"http://127.0.0.1:{service.api.port} (model {checkpoint.name})"
            )
            sent = _push(study, service.scp.port, settings.ae_title)
            progress(f"C-STORE: {sent} instances sent by {CALLING_AE} in one association")
            sessions = make_session_factory(service.engine)
            job_id = _wait_done(sessions, study.study_instance_uid, timeout, progress)
            with sessions() as session:
                detail = queries.job_detail(session, job_id)
        finally:
            progress("stopping the node")
            service.stop()
        return _summarise(detail, study, pacs, ris, workdir, out)
    finally:
        pacs.stop()
        ris.stop()


def _summarise(
    detail: queries.JobDetail | None,
    study: WrittenStudy,
    pacs: DemoPacs,
    ris: MllpReceiver,
    workdir: Path,
    out: TextIO,
) -> int:
    if detail is None:
        raise DemoError("the job disappeared")
    uids = {r.kind: r.sop_instance_uid or r.control_id for r in detail.results}
    received = {p.stem: p for p in pacs.files()}
    seg = received.get(uids.get(ResultKind.SEG) or "")
    sr = received.get(uids.get(ResultKind.SR) or "")
    acked = [d for d in detail.hl7_acks if d.state == "sent" and d.last_status in ("AA", "CA")]
    checks = {
        "job done": detail.job.state == JobState.DONE,
        "SEG received by the PACS": seg is not None,
        "SR received by the PACS": sr is not None,
        "ORU^R01 received and acknowledged by the RIS": bool(acked)
        and uids.get(ResultKind.ORU) in ris.control_ids(),
    }
    paths: dict[str, Path] = {"study": study.directory}
    comparisons = []
    findings = None if sr is None else findings_from_sr(sr)
    if seg is not None:
        sources = {
            uid: path
            for series in study.series
            for uid, path in zip(series.sop_instance_uids, series.paths, strict=True)
        }
        overlay = workdir / "overlay.png"
        overlay.write_bytes(render_overlay_png(seg, sources.get, findings))
        paths |= {"SEG": seg, "overlay": overlay}
    if sr is not None and findings is not None:
        paths["SR"] = sr
        comparisons = compare_findings(findings, read_truth(study.directory)["findings"])
    paths["log"] = workdir / "node.log"
    write_summary(out, detail, comparisons, paths, checks)
    return 0 if all(checks.values()) else 1


DEFAULT_OUTPUTS = Path("var/demo")


def _workdir(keep: Path | None) -> Path:
    """The folder the demo keeps its outputs in: ``keep`` (must be empty), else a new one named
    after the time under ``var/demo``.

    Raises:
        DemoError: if ``keep`` is not empty.
    """
    folder = keep or DEFAULT_OUTPUTS / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise DemoError(f"--keep folder {folder} is not empty")
    return folder.resolve()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pacs-node demo", description=summary(__doc__))
    p.add_argument("--size", choices=sorted(PRESETS), default="standard", help="phantom size")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    p.add_argument(
        "--keep", type=Path, help="keep the outputs in this (empty) folder (default: var/demo/TIME)"
    )
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the job")
    p.add_argument("--config", type=Path, help="TOML settings (only model and device are used)")
    return p


def main(argv: list[str], out: TextIO = sys.stdout) -> int:
    """Run the demo; returns the exit status (2 when it cannot run).

    Raises:
        Nothing: failures are reported on stderr with status 2.
    """
    args = _parser().parse_args(argv)
    if args.seed < 0:
        print("pacs-node demo: error: --seed must be non-negative", file=sys.stderr)
        return 2
    try:
        base = load_settings(args.config)
        workdir = _workdir(args.keep)
        out.write(f"outputs are kept in {workdir}\n")
        return run_demo(
            workdir, size=args.size, seed=args.seed, timeout=args.timeout, out=out, base=base
        )
    except (NodeError, OSError) as exc:
        print(f"pacs-node demo: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
