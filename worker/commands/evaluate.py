"""``pacs-node evaluate``: metrics of one or more checkpoints on held-out phantom studies.

Example (text-guided vs visual-only side by side)::

    pacs-node evaluate --checkpoint text=models/checkpoints/lumbar_default.safetensors \\
        --checkpoint visual=runs/visual/model.safetensors --seeds 9000:9030
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from worker.commands import summary


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(prog="pacs-node evaluate", description=summary(__doc__))
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        help="NAME=PATH (repeatable); default: the shipped checkpoint",
    )
    parser.add_argument("--seeds", default="9000:9030", help="held-out phantom seeds START:STOP")
    parser.add_argument("--size", default="small", choices=["small", "standard"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the metrics as JSON here")
    parser.add_argument("--no-text", action="store_true", help="skip retrieval (no text encoder)")
    return parser


def main(argv: list[str]) -> int:
    """Evaluate and print the table; returns the process exit code.

    Raises:
        OSError: if a checkpoint cannot be read.
        ValueError: on malformed arguments.
    """
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    from models.inference import DEFAULT_CHECKPOINT, Predictor
    from models.text_encoder import TextEncoder
    from models.training.evaluate import evaluate, format_comparison, phantom_samples

    torch.set_num_threads(args.threads)
    start, stop = (int(v) for v in args.seeds.split(":"))
    entries = args.checkpoint or [f"default={DEFAULT_CHECKPOINT}"]
    checkpoints = dict(entry.split("=", 1) for entry in entries)
    samples = list(phantom_samples(range(start, stop), args.size))
    text_encoder = None if args.no_text else TextEncoder.from_directory()
    results = {
        name: evaluate(Predictor.load(Path(path), args.device), samples, text_encoder)
        for name, path in checkpoints.items()
    }
    print(format_comparison(results))
    if args.json:
        args.json.write_text(json.dumps({k: asdict(v) for k, v in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
