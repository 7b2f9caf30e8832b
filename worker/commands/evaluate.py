"""``pacs-node evaluate``: metrics of one or more checkpoints on held-out phantom studies.

Example (text-guided vs visual-only side by side)::

    pacs-node evaluate --checkpoint text=models/checkpoints/lumbar_default.safetensors \\
        --checkpoint visual=runs/visual/model.safetensors --seeds 9000:9030

Robustness suite (every shift of ``models.robustness.SUITES["full"]``, one table, targets)::

    pacs-node evaluate --suite full --json suite.json --reliability reliability.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from worker.commands import summary

DEFAULT_SEEDS = "9000:9030"


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(prog="pacs-node evaluate", description=summary(__doc__))
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        help="NAME=PATH (repeatable); default: the shipped checkpoint",
    )
    parser.add_argument(
        "--suite", help="run every shift of this robustness suite (full, ci) instead of --size"
    )
    parser.add_argument(
        "--seeds",
        help=f"held-out phantom seeds START:STOP (default {DEFAULT_SEEDS}, or the suite's)",
    )
    parser.add_argument("--size", default="small", help="phantom preset (without --suite)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the metrics as JSON here")
    parser.add_argument(
        "--reliability",
        type=Path,
        help="write a reliability diagram PNG of the first checkpoint on the baseline set here",
    )
    parser.add_argument(
        "--text",
        action=argparse.BooleanOptionalAction,
        help="retrieval with the text encoder (default: on, off with --suite)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str]) -> int:
    """Evaluate and print the table; returns the process exit code.

    Raises:
        OSError: if a checkpoint cannot be read.
        ValueError: on malformed arguments.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    from models.inference import DEFAULT_CHECKPOINT, Predictor
    from models.robustness import SHIFTS
    from models.text_encoder import TextEncoder
    from models.training.evaluate import evaluate, phantom_samples
    from models.training.report import (
        format_comparison,
        format_suite,
        format_targets,
        plot_reliability,
        suite_document,
    )
    from models.training.suite import Targets, run_suite, suite_plan, target_misses

    seeds = seed_range(args.seeds) if args.seeds else None
    plan = None
    if args.suite is not None:
        try:
            plan = suite_plan(args.suite, seeds)
        except ValueError as error:
            parser.error(str(error))
    torch.set_num_threads(args.threads)
    entries = args.checkpoint or [f"default={DEFAULT_CHECKPOINT}"]
    checkpoints = dict(entry.split("=", 1) for entry in entries)
    predictors = {name: Predictor.load(Path(p), args.device) for name, p in checkpoints.items()}
    use_text = args.text if args.text is not None else args.suite is None
    text_encoder = TextEncoder.from_directory() if use_text else None
    progress = not args.quiet

    if plan is None:
        samples = list(phantom_samples(seeds or seed_range(DEFAULT_SEEDS), args.size))
        results = {
            name: evaluate(predictor, samples, text_encoder, progress)
            for name, predictor in predictors.items()
        }
        print(format_comparison(results))
        shown = (args.size, results)
        document: dict[str, Any] = {k: asdict(v) for k, v in results.items()}
    else:
        shifts, suite_seeds = plan
        table = run_suite(predictors, shifts, suite_seeds, text_encoder, progress)
        descriptions = {shift: SHIFTS[shift][0] for shift in shifts}
        targets = Targets()
        misses = {
            shift: {name: target_misses(e, targets) for name, e in row.items()}
            for shift, row in table.items()
        }
        print(format_suite(table, descriptions))
        print()
        print(format_targets(misses, targets))
        shown = next((s, table[s]) for s in ("baseline", *shifts) if s in table)
        document = suite_document(args.suite, suite_seeds, checkpoints, table, descriptions, misses)
    if args.json:
        args.json.write_text(json.dumps(document, indent=1))
    if args.reliability:
        dataset, evaluations = shown
        name, first = next(iter(evaluations.items()))
        plot_reliability(first, args.reliability, f"{name} on {dataset}: level probabilities")
    return 0


def seed_range(text: str) -> range:
    """``START:STOP`` as a range.

    Raises:
        ValueError: if ``text`` is not two integers separated by a colon.
    """
    start, stop = (int(v) for v in text.split(":"))
    return range(start, stop)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
