"""``pacs-node train``: train the lumbar network from a JSON config on phantom studies.

Example::

    pacs-node train --config default --out runs/default --cache /tmp/phantom-cache
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from worker.commands import summary

if TYPE_CHECKING:
    from models.data.samples import StudySample


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(prog="pacs-node train", description=summary(__doc__))
    parser.add_argument("--config", default="default", help="config name or JSON path")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--cache", type=Path, required=True, help="phantom cache directory")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/resume.pt")
    parser.add_argument(
        "--init", type=Path, help="start from this checkpoint's weights where they fit"
    )
    parser.add_argument(
        "--init-only",
        action="append",
        default=[],
        metavar="PREFIX",
        help="with --init: take only the tensors under PREFIX (repeatable, e.g. encoder)",
    )
    parser.add_argument("--seed", type=int, help="training seed (overrides the config's)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda)")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes generating missing phantoms"
    )
    parser.add_argument("--version", default="0.1.0", help="model version to record")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--spider", type=Path, action="append", default=[], help="SPIDER root")
    parser.add_argument("--rsna", type=Path, action="append", default=[], help="RSNA 2024 root")
    parser.add_argument(
        "--dicom", type=Path, action="append", default=[], help="folder of DICOM + DICOM SEG"
    )
    return parser


def extra_samples(args: argparse.Namespace) -> list[StudySample]:
    """Load the local public or site datasets named on the command line.

    Raises:
        OSError: if a dataset cannot be read.
        ValueError: if a dataset is inconsistent.
    """
    from models.data.rsna import read_rsna
    from models.data.spider import list_spider_patients, load_spider_study
    from models.labels import load_label_scheme
    from worker.dicom_dataset import load_dicom_folder, load_rsna_study

    scheme = load_label_scheme()
    samples: list[StudySample] = []
    for root in args.spider:
        samples += [load_spider_study(root, p, scheme) for p in list_spider_patients(root)]
    for root in args.rsna:
        samples += [load_rsna_study(s) for s in read_rsna(root) if "SAG_T2" in s.series]
    for root in args.dicom:
        samples += load_dicom_folder(root, scheme)
    return samples


def main(argv: list[str]) -> int:
    """Run training; returns the process exit code.

    Raises:
        OSError: if inputs or outputs cannot be accessed.
        ValueError: on an invalid config.
    """
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    from models.config import load_train_config
    from models.training.trainer import train

    torch.set_num_threads(args.threads)
    config = load_train_config(args.config)
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    command = "pacs-node train " + shlex.join(argv)
    result = train(
        config,
        args.cache,
        args.out,
        resume=args.resume,
        progress=not args.quiet,
        version=args.version,
        extra={"command": command},
        extra_samples=extra_samples(args),
        device=args.device,
        workers=args.workers,
        init=args.init,
        init_prefixes=tuple(args.init_only),
    )
    print(f"checkpoint {result.checkpoint} sha256 {result.sha256}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
