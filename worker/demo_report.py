"""What ``pacs-node demo`` prints: the job table, stage timings and findings against the truth.

Findings are read back from the SR the PACS received (TID 1500 qualitative evaluations per disc
level), not from the node's memory, so the summary shows what a PACS user would see.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from pacs_node.db.queries import EventView, JobDetail
from pacs_node.results import codes
from pacs_node.results.summary import ordered_levels


@dataclass(frozen=True)
class LevelComparison:
    """One disc level: abnormalities the model called present and those the truth has."""

    level: str
    predicted: frozenset[str]
    truth: frozenset[str]
    scored: frozenset[str]

    @property
    def agree(self) -> int:
        """Abnormalities on which the model and the truth agree (present or absent)."""
        return sum((key in self.predicted) == (key in self.truth) for key in self.scored)


def compare_findings(
    predicted: Mapping[str, Mapping[str, bool]], truth: Mapping[str, Mapping[str, bool]]
) -> list[LevelComparison]:
    """Levels present in both, cranio-caudal, scored on the abnormalities both have."""
    comparisons = []
    for level in ordered_levels(set(predicted) & set(truth)):
        scored = frozenset(predicted[level]) & frozenset(truth[level])
        comparisons.append(
            LevelComparison(
                level,
                frozenset(k for k in scored if predicted[level][k]),
                frozenset(k for k in scored if truth[level][k]),
                scored,
            )
        )
    return comparisons


def stage_rows(events: Sequence[EventView], created_at: datetime) -> list[tuple[str, float, str]]:
    """(state entered, seconds since the job was created, the event's stage timings) per event."""
    rows = []
    for event in events:
        timings = event.details.get("timings")
        items = timings.items() if isinstance(timings, dict) else ()
        detail = ", ".join(f"{name} {float(s):.2f} s" for name, s in items)
        rows.append((event.state, (event.at - created_at).total_seconds(), detail))
    return rows


def _write_findings(out: TextIO, comparisons: Sequence[LevelComparison]) -> None:
    """A grid: one row per level, one column per abnormality, cells model/truth (+ or -)."""
    keys = [k for k in codes.ABNORMALITY_CODES if any(k in c.scored for c in comparisons)]
    out.write("\n== findings per disc level: model (from the returned SR) / phantom truth\n")
    widths = [len(k) + 2 for k in keys]
    out.write(f"  {'level':<8}" + "".join(f"{k:>{w}}" for k, w in zip(keys, widths, strict=True)))
    out.write("\n")
    for c in comparisons:
        cells = []
        for key, width in zip(keys, widths, strict=True):
            if key not in c.scored:
                cells.append(f"{'n/a':>{width}}")
                continue
            model, truth = key in c.predicted, key in c.truth
            mark = f"{'+' if model else '-'}/{'+' if truth else '-'}"
            cells.append(f"{mark + ('' if model == truth else ' *'):>{width}}")
        out.write(f"  {c.level:<8}" + "".join(cells) + "\n")
    total = sum(len(c.scored) for c in comparisons)
    if total:
        agree = sum(c.agree for c in comparisons)
        out.write(
            f"  agreement {agree}/{total} calls ({100 * agree / total:.0f}%); "
            "+ present, - absent, * disagreement\n"
        )


def write_summary(
    out: TextIO,
    detail: JobDetail,
    comparisons: Sequence[LevelComparison],
    paths: Mapping[str, Path],
    checks: Mapping[str, bool],
) -> None:
    """Print the demo's summary: job table, stage timings, findings, output paths, checks."""
    job = detail.job
    out.write("\n== job\n")
    out.write(f"{'job':>4}  {'state':<9}  {'trigger':<24}  {'model':<20}  study\n")
    out.write(
        f"{job.id:>4}  {job.state:<9}  {job.trigger or '-':<24}  {job.model_name or '-':<20}  "
        f"{job.study_instance_uid}\n"
    )
    out.write(f"checkpoint sha256 {detail.checkpoint_sha256 or '-'}\n")
    out.write("\n== timeline (seconds since the job was created)\n")
    for state, offset, timings in stage_rows(detail.events, job.created_at):
        out.write(f"  {offset:7.2f}  {state:<13}  {timings}\n")
    out.write("\n== results\n")
    for result in detail.results:
        for d in result.deliveries:
            out.write(
                f"  {result.kind:<9} -> {d.destination:<28} {d.state} "
                f"({d.attempts} attempt(s), status {d.last_status})\n"
            )
    _write_findings(out, comparisons)
    out.write("\n== files\n")
    for name, path in paths.items():
        out.write(f"  {name:<8} {path}\n")
    out.write("\n== checks\n")
    for name, ok in checks.items():
        out.write(f"  [{'ok' if ok else 'FAILED'}] {name}\n")
