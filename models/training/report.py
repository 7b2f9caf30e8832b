"""Text tables, JSON documents and reliability diagrams of evaluations (formatting only: the
numbers come from :mod:`models.training.evaluate` and :mod:`models.training.suite`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from models.training.evaluate import Evaluation
from models.training.suite import Miss, Targets


def format_comparison(results: Mapping[str, Evaluation]) -> str:
    """Side-by-side text table of several evaluations (e.g. text-guided vs visual-only).

    Raises:
        ValueError: if ``results`` is empty.
    """
    if not results:
        raise ValueError("nothing to format")
    names = list(results)
    evaluations = list(results.values())
    width = max(14, *(len(n) + 2 for n in names))
    lines = ["metric".ljust(32) + "".join(n.rjust(width) for n in names)]

    def cells(label: str, values: Sequence[str]) -> None:
        lines.append(label.ljust(32) + "".join(v.rjust(width) for v in values))

    def row(label: str, values: Sequence[float], digits: int = 3) -> None:
        cells(label, [_number(v, digits) for v in values])

    first = evaluations[0]
    row("studies", [r.studies for r in evaluations], 0)
    row("mIoU (19 structures)", [r.miou for r in evaluations])
    row("lumbar mIoU (L1-S, L1/L2-L5/S1)", [r.lumbar_miou for r in evaluations])
    row("mean Dice (19)", [r.mean_dice for r in evaluations])
    for name in first.structures:
        for metric, label in (("dice", "Dice"), ("iou", "IoU"), ("hd95", "HD95 mm")):
            row(
                f"  {label} {name}",
                [r.structures.get(name, {}).get(metric, math.nan) for r in evaluations],
            )
    for key in first.abnormalities:
        for metric in ("recall", "precision", "fpr"):
            row(f"{key} {metric}", [r.abnormalities[key][metric] for r in evaluations])
        row(f"{key} ECE", [r.calibration_error.get(key, math.nan) for r in evaluations])
    for metric in ("R@1", "R@5"):
        row(f"retrieval {metric}", [r.retrieval.get(metric, math.nan) for r in evaluations])
        row(f"  chance {metric}", [r.retrieval_chance.get(metric, math.nan) for r in evaluations])
    row("zero-shot accuracy", [r.zero_shot_accuracy for r in evaluations])
    row("  all-absent baseline", [r.all_absent_accuracy for r in evaluations])
    row("review flagged share", [r.quality.get("flag_rate", math.nan) for r in evaluations])
    cells("failed studies", [_count(r.quality, "failed", "studies") for r in evaluations])
    cells(
        "  flagged among failed",
        [_share(r.quality, "sensitivity", "flagged_failed", "failed") for r in evaluations],
    )
    cells(
        "  flagged among passed",
        [_share(r.quality, "false_alarm_rate", "flagged_passed", "passed") for r in evaluations],
    )
    return "\n".join(lines)


def format_suite(
    results: Mapping[str, Mapping[str, Evaluation]], descriptions: Mapping[str, str]
) -> str:
    """One table of a suite run: a row per shift, a group of columns per checkpoint, and the
    shift's description last.

    Raises:
        ValueError: if ``results`` is empty.
    """
    if not results:
        raise ValueError("nothing to format")
    checkpoints = list(next(iter(results.values())))
    retrieval = any(e.retrieval for row in results.values() for e in row.values())
    columns = [
        "mIoU",
        "lumbar",
        "worst structure",
        "recall/FPR",
        "worst recall",
        "worst FPR",
        "ECE",
        "worst ECE",
        "zero-shot/absent",
        *(["R@1/chance", "R@5/chance"] if retrieval else []),
        "flagged",
        "flag|failed",
        "flag|passed",
    ]
    groups = [[name, *[""] * (len(columns) - 1)] for name in checkpoints]
    table = [
        ["", *(c for g in groups for c in g), ""],
        ["shift", *columns * len(checkpoints), "description"],
    ]
    for shift, row in results.items():
        cells = [shift]
        for name in checkpoints:
            cells += _suite_cells(row[name], retrieval)
        table.append([*cells, descriptions.get(shift, "")])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    group_width = len(columns)
    lines = []
    for r in table:
        parts = [r[0].ljust(widths[0])]
        for g in range(len(checkpoints)):
            span = range(1 + g * group_width, 1 + (g + 1) * group_width)
            parts.append("  ".join(r[i].ljust(widths[i]) for i in span))
        parts.append(r[-1])
        lines.append(" | ".join(parts).rstrip(" |"))
    return "\n".join(lines)


def format_targets(misses: Mapping[str, Mapping[str, Sequence[Miss]]], targets: Targets) -> str:
    """The targets missed, per checkpoint and shift (``misses`` is shift -> checkpoint -> list),
    each as ``shift: metric value (margin)``.

    Raises:
        Nothing.
    """
    lines = [
        f"targets: mIoU >= {targets.miou:.2f}; L1-L5, S and L1/L2-L5/S1 IoU >= "
        f"{targets.lumbar_iou:.2f}; per class recall >= {targets.recall:.2f}, "
        f"FPR <= {targets.fpr:.2f}"
    ]
    checkpoints = list(next(iter(misses.values()), {}))
    for name in checkpoints:
        lines.append(f"{name}:")
        for shift, row in misses.items():
            if not row[name]:
                lines.append(f"  {shift}: all met")
            for miss in row[name]:
                lines.append(f"  {shift}: {miss.metric} {miss.value:.3f} ({miss.margin:+.3f})")
    return "\n".join(lines)


def suite_document(
    suite: str,
    seeds: range,
    checkpoints: Mapping[str, str],
    results: Mapping[str, Mapping[str, Evaluation]],
    descriptions: Mapping[str, str],
    misses: Mapping[str, Mapping[str, Sequence[Miss]]],
) -> dict[str, Any]:
    """Everything a suite run measured, as JSON-ready data.

    Raises:
        Nothing.
    """
    return {
        "suite": suite,
        "seeds": [seeds.start, seeds.stop],
        "checkpoints": dict(checkpoints),
        "shifts": {
            shift: {
                "description": descriptions.get(shift, ""),
                "results": {name: asdict(e) for name, e in row.items()},
                "target_misses": {
                    name: [{**asdict(m), "margin": m.margin} for m in missed]
                    for name, missed in misses[shift].items()
                },
            }
            for shift, row in results.items()
        },
    }


def plot_reliability(evaluation: Evaluation, path: Path, title: str) -> None:
    """Reliability diagram: observed frequency against mean probability per bin, one panel per
    abnormality class and one pooled, with each bin's count over its bar.

    Raises:
        ValueError: if the evaluation has no reliability bins.
        OSError: if the PNG cannot be written.
    """
    if not evaluation.reliability:
        raise ValueError("no reliability bins")
    keys = list(evaluation.reliability)
    columns = 3
    rows = math.ceil(len(keys) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4 * rows), squeeze=False)
    for axis, key in zip(axes.flat, keys, strict=False):
        bins = evaluation.reliability[key]
        width = 1 / len(bins.count)
        centres = [(i + 0.5) * width for i in range(len(bins.count))]
        heights = [0.0 if math.isnan(f) else f for f in bins.frequency]
        axis.bar(centres, heights, width=width * 0.9, alpha=0.7, label="observed")
        axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="calibrated")
        for x, y, n in zip(centres, heights, bins.count, strict=True):
            if n:
                axis.text(x, y + 0.02, str(n), ha="center", fontsize=7)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1.1)
        axis.set_title(f"{key} (ECE {_number(evaluation.calibration_error.get(key, math.nan))})")
        axis.set_xlabel("predicted probability")
        axis.set_ylabel("share present")
    for axis in list(axes.flat)[len(keys) :]:
        axis.set_visible(False)
    axes.flat[0].legend(loc="upper left", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _suite_cells(evaluation: Evaluation, retrieval: bool) -> list[str]:
    classes = {k: v for k, v in evaluation.abnormalities.items() if k != "all"}
    pooled = evaluation.abnormalities["all"]
    ece = {k: v for k, v in evaluation.calibration_error.items() if k != "all"}
    cells = [
        _number(evaluation.miou),
        _number(evaluation.lumbar_miou),
        _extreme({k: v["iou"] for k, v in evaluation.structures.items()}, highest=False),
        f"{_number(pooled['recall'])}/{_number(pooled['fpr'])}",
        _extreme({k: v["recall"] for k, v in classes.items()}, highest=False),
        _extreme({k: v["fpr"] for k, v in classes.items()}, highest=True),
        _number(evaluation.calibration_error.get("all", math.nan)),
        _extreme(ece, highest=True),
        f"{_number(evaluation.zero_shot_accuracy)}/{_number(evaluation.all_absent_accuracy)}",
    ]
    if retrieval:
        cells += [
            f"{_number(evaluation.retrieval.get(k, math.nan))}/"
            f"{_number(evaluation.retrieval_chance.get(k, math.nan))}"
            for k in ("R@1", "R@5")
        ]
    quality = evaluation.quality
    return [
        *cells,
        _number(quality.get("flag_rate", math.nan), 2),
        _count(quality, "flagged_failed", "failed"),
        _count(quality, "flagged_passed", "passed"),
    ]


def _extreme(values: Mapping[str, float], highest: bool) -> str:
    """``name value`` of the lowest (or highest) measured value, or ``n/a``."""
    measured = {k: v for k, v in values.items() if not math.isnan(v)}
    if not measured:
        return "n/a"
    name = (max if highest else min)(measured, key=measured.__getitem__)
    return f"{name} {_number(measured[name])}"


def _number(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _count(quality: Mapping[str, float], part: str, whole: str) -> str:
    if whole not in quality:
        return "n/a"
    return f"{quality[part]:.0f}/{quality[whole]:.0f}"


def _share(quality: Mapping[str, float], rate: str, part: str, whole: str) -> str:
    if rate not in quality:
        return "n/a"
    return f"{_number(quality[rate], 2)} ({_count(quality, part, whole)})"
