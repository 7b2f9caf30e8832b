"""A disk cache of phantom studies in model space (one ``.npz`` per seed).

Generating phantoms and embedding their reports once saves most of the data cost of training.
"""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.config import ModelConfig
from models.data.phantom import phantom_to_sample
from models.data.samples import ModelSample, load_model_sample, save_model_sample, to_model_sample
from models.labels import load_label_scheme
from models.phantom import PhantomConfig, generate_study
from models.robustness import phantom_preset
from models.text_encoder import TextEncoder


def phantom_config(size: str) -> PhantomConfig:
    """The phantom preset called ``size`` (see :func:`models.robustness.phantom_preset`).

    Raises:
        ValueError: on an unknown name.
    """
    return phantom_preset(size)


def cache_path(cache_dir: Path, seed: int, size: str, model: ModelConfig) -> Path:
    """Where the sample for ``seed`` lives."""
    spacing = f"-{model.spacing_mm:g}mm" if model.spacing_mm > 0 else ""
    return cache_dir / f"{size}-{model.img_size}px{spacing}-{model.in_chans}ch" / f"{seed}.npz"


def build_cache(
    seeds: Iterable[int],
    cache_dir: Path,
    size: str,
    model: ModelConfig,
    text_encoder: TextEncoder | None,
    progress: bool = True,
    workers: int = 1,
) -> list[Path]:
    """Generate, preprocess and store every missing seed; return all paths in seed order.

    Phantoms are generated in ``workers`` processes; reports are embedded in this one.

    Raises:
        OSError: if the cache cannot be written.
    """
    seeds = list(seeds)
    paths = [cache_path(cache_dir, s, size, model) for s in seeds]
    missing = [s for s, p in zip(seeds, paths, strict=True) if not p.is_file()]
    jobs = [(seed, size, model) for seed in missing]
    if workers > 1:
        context = multiprocessing.get_context("spawn")  # fork could inherit a busy OpenMP pool
        with ProcessPoolExecutor(
            workers, context, initializer=torch.set_num_threads, initargs=(1,)
        ) as pool:
            made = pool.map(_model_sample, jobs, chunksize=4)
            _store(zip(jobs, made, strict=True), len(jobs), cache_dir, text_encoder, progress)
    else:
        made = map(_model_sample, jobs)
        _store(zip(jobs, made, strict=True), len(jobs), cache_dir, text_encoder, progress)
    return paths


def _store(
    made: Iterable[tuple[tuple[int, str, ModelConfig], bytes]],
    count: int,
    cache_dir: Path,
    text_encoder: TextEncoder | None,
    progress: bool,
) -> None:
    """Embed the report of each (job, made sample) and write the sample as it arrives."""
    for job, pickled in tqdm(made, total=count, desc="phantom cache", disable=not progress):
        sample, report = pickle.loads(pickled)  # noqa: S301 - made by our own worker
        if text_encoder is not None and report:
            sample.report_embedding = text_encoder.encode([report])[0]
        save_model_sample(sample, cache_path(cache_dir, *job))


def _model_sample(job: tuple[int, str, ModelConfig]) -> bytes:
    """The pickled model-space sample of one phantom seed and its report (runs in a worker).

    Pickled here so that tensors travel by value, not as shared-memory handles.
    """
    seed, size, model = job
    study = phantom_to_sample(generate_study(seed, phantom_config(size)))
    sample = to_model_sample(study, load_label_scheme(), model)
    return pickle.dumps((sample, study.report))


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
