"""Inference benchmark: Predictor time per study vs a bare forward pass of the same network.

Prints, per device (CPU, and CUDA when available) and phantom size, the median wall time of
``Predictor.predict`` on a study and of ``LumbarNet.forward_study`` on the already preprocessed
tensors; their ratio is the pipeline overhead (preprocessing, resampling back to the input
geometry, post-processing, measurements).

Usage: ``python bench/inference/run.py [--checkpoint PATH] [--studies 5] [--threads 2]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from models.data.samples import to_model_sample
from models.inference import Predictor
from models.labels import load_label_scheme
from models.network import LumbarNet
from models.training.evaluate import phantom_samples, volumes_of


def median_seconds(function: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``function`` over ``repeats`` calls (after one warm-up)."""
    function()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def bare_forward(model: LumbarNet, images: torch.Tensor, positions: torch.Tensor) -> object:
    """The network alone on preprocessed tensors (segmentation + level scoring)."""
    return model.forward_study(images, positions)


def main(argv: list[str]) -> int:
    """Run the benchmark and print a table; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--studies", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="small,standard")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    scheme = load_label_scheme()
    print(
        f"{'device':8}{'phantom':10}{'slices x px':>14}{'pipeline s':>12}{'bare s':>10}{'ratio':>8}"
    )
    for device_name in devices:
        predictor = Predictor.load(args.checkpoint, device=device_name)
        device = predictor.device
        config = predictor.meta.config
        for size in args.sizes.split(","):
            samples = list(phantom_samples(range(7000, 7000 + args.studies), size))
            pipeline, bare = [], []
            for sample in samples:
                volumes = volumes_of(sample)
                model_sample = to_model_sample(sample, scheme, config)
                images = model_sample.images.to(predictor.device)
                positions = model_sample.positions_mm.to(predictor.device)

                pipeline.append(
                    median_seconds(partial(predictor.predict, volumes), args.repeats, device)
                )
                forward = partial(bare_forward, predictor.model, images, positions)
                bare.append(median_seconds(forward, args.repeats, device))
            shape = samples[0].t2.shape
            p, b = statistics.median(pipeline), statistics.median(bare)
            print(
                f"{device_name:8}{size:10}{f'{shape[0]}x{shape[1]}x{shape[2]}':>14}"
                f"{p:12.3f}{b:10.3f}{p / b:8.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
