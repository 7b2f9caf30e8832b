"""A disk cache of phantom studies in model space (one ``.npz`` per seed).

Generating phantoms and embedding their reports once saves most of the data cost of training.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.data.phantom import phantom_to_sample
from models.data.samples import ModelSample, load_model_sample, save_model_sample, to_model_sample
from models.labels import load_label_scheme
from models.phantom import PhantomConfig, generate_study
from models.text_encoder import TextEncoder


def phantom_config(size: str) -> PhantomConfig:
    """The phantom preset called ``size`` (``small`` or ``standard``).

    Raises:
        ValueError: on an unknown size.
    """
    if size not in ("small", "standard"):
        raise ValueError(f"unknown phantom size {size!r}")
    return PhantomConfig.small() if size == "small" else PhantomConfig.standard()


def cache_path(cache_dir: Path, seed: int, size: str, img_size: int, in_chans: int) -> Path:
    """Where the sample for ``seed`` lives."""
    return cache_dir / f"{size}-{img_size}px-{in_chans}ch" / f"{seed}.npz"


def build_cache(
    seeds: Iterable[int],
    cache_dir: Path,
    size: str,
    img_size: int,
    in_chans: int,
    text_encoder: TextEncoder | None,
    progress: bool = True,
) -> list[Path]:
    """Generate, preprocess and store every missing seed; return all paths in seed order.

    Raises:
        OSError: if the cache cannot be written.
    """
    scheme = load_label_scheme()
    config = phantom_config(size)
    seeds = list(seeds)
    paths = [cache_path(cache_dir, s, size, img_size, in_chans) for s in seeds]
    missing = [(s, p) for s, p in zip(seeds, paths, strict=True) if not p.is_file()]
    for seed, path in tqdm(missing, desc="phantom cache", disable=not progress):
        study = phantom_to_sample(generate_study(seed, config))
        sample = to_model_sample(study, scheme, img_size, in_chans)
        if text_encoder is not None and study.report:
            sample.report_embedding = text_encoder.encode([study.report])[0]
        save_model_sample(sample, path)
    return paths


def load_cache(paths: list[Path]) -> list[ModelSample]:
    """Load cached samples.

    Raises:
        OSError: if a file cannot be read.
    """
    return [load_model_sample(p) for p in paths]


def positive_weights(samples: list[ModelSample], limit: float = 20.0) -> torch.Tensor:
    """Per-abnormality BCE positive weight (1 - p) / p over valid levels, clipped to [1, limit].

    Raises:
        ValueError: if no sample has a valid level.
    """
    rows = [s.findings[s.findings_valid] for s in samples if bool(s.findings_valid.any())]
    if not rows:
        raise ValueError("no findings to weight")
    prevalence = torch.cat(rows).mean(0).numpy()
    weights = (1 - prevalence) / np.maximum(prevalence, 1e-3)
    return torch.from_numpy(np.clip(weights, 1.0, limit).astype(np.float32))
