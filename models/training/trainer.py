"""The training loop: stages from a :class:`TrainConfig`, progress bars, curves, resumable.

Outputs in ``out_dir``: ``resume.pt`` (model + optimiser + position, ``weights_only`` loadable),
``history.json`` and ``curves.png`` (logged losses), and the final ``model.safetensors`` with
per-class thresholds tuned on the validation seeds.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from tqdm import tqdm

from models.checkpoint import CheckpointMeta, read_checkpoint, save_checkpoint
from models.config import StageConfig, TrainConfig, config_to_json
from models.data.samples import ModelSample, StudySample, to_model_sample
from models.inference import Predictor
from models.labels import load_label_scheme
from models.network import LumbarNet
from models.prompts import build_prompt_bank
from models.text_encoder import TextEncoder
from models.training.cache import build_cache, load_cache, positive_weights
from models.training.evaluate import phantom_samples, tune_thresholds
from models.training.steps import stage_loss

WARMUP_FRACTION = 0.05


@dataclass
class TrainResult:
    """Where training put its outputs."""

    checkpoint: Path
    sha256: str
    history: list[dict[str, float]]


def learning_rate(stage: StageConfig, step: int) -> float:
    """Linear warm-up then cosine decay to 5% of the peak."""
    warmup = max(1, int(stage.steps * WARMUP_FRACTION))
    if step < warmup:
        return stage.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, stage.steps - warmup)
    return stage.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def build_model(config: TrainConfig, text_encoder: TextEncoder) -> LumbarNet:
    """A fresh network with prompt embeddings from ``text_encoder``.

    Raises:
        ValueError: if the config does not fit the label scheme.
    """
    scheme = load_label_scheme()
    torch.manual_seed(config.seed)
    bank = build_prompt_bank(text_encoder, scheme)
    return LumbarNet(config.model, bank, tuple(d.value for d in scheme.discs))


def train(
    config: TrainConfig,
    cache_dir: Path,
    out_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    text_encoder: TextEncoder | None = None,
    version: str = "0.1.0",
    extra: dict[str, str] | None = None,
    extra_samples: Sequence[StudySample] = (),
    device: str = "cpu",
    workers: int = 1,
    init: Path | None = None,
    init_prefixes: tuple[str, ...] = (),
) -> TrainResult:
    """Run every stage, tune thresholds on the validation seeds and save the checkpoint.

    ``extra_samples`` (e.g. SPIDER, RSNA or DICOM + SEG studies a site has) join the phantom
    training set: labelled ones in the supervised stage, those with reports in the contrastive
    stage, all of them in masked-image pretraining. Training runs on ``device`` (``"cuda"`` on a
    GPU) with every sample held there; ``workers`` processes generate missing phantoms. ``init``
    names a checkpoint whose weights start the run wherever names and shapes match (fine-tuning
    an earlier release after the architecture grew), only those under ``init_prefixes`` when
    given (e.g. the encoder alone, for ablation arms that start their heads alike);
    ``resume`` state takes precedence.

    Raises:
        OSError: if outputs cannot be written.
        ValueError: on an invalid config.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = text_encoder or TextEncoder.from_directory(config.text_encoder or None)
    model = build_model(config, encoder)
    if init is not None:
        state = read_checkpoint(init)[1]
        if init_prefixes:
            state = {k: v for k, v in state.items() if k.startswith(init_prefixes)}
        fresh = transfer_weights(model, state)
        if progress:
            tqdm.write(f"initialised from {init}; {len(fresh)} tensors start fresh")
    samples = load_cache(
        build_cache(
            range(*config.train_seeds),
            cache_dir,
            config.phantom_size,
            config.model,
            encoder,
            progress,
            workers,
        )
    )
    scheme = load_label_scheme()
    for study in extra_samples:
        sample = to_model_sample(study, scheme, config.model)
        if study.report:
            sample.report_embedding = encoder.encode([study.report])[0]
        samples.append(sample)
    pos_weight = positive_weights(samples).to(device)
    samples = [s.to(device) for s in samples]
    history: list[dict[str, float]] = []
    start_stage, start_step = 0, 0
    resume_path = out_dir / "resume.pt"
    optimizer_state = None
    if resume and resume_path.is_file():
        state = torch.load(resume_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        start_stage, start_step = int(state["stage"]), int(state["step"])
        history = json.loads(state["history"])
        optimizer_state = state["optimizer"]
    model.to(device)
    for index, stage in enumerate(config.stages):
        if index < start_stage:
            continue
        first = start_step if index == start_stage else 0
        _run_stage(
            model,
            config,
            index,
            stage,
            samples,
            pos_weight,
            history,
            resume_path,
            first,
            optimizer_state if index == start_stage else None,
            progress,
        )
    (out_dir / "history.json").write_text(json.dumps(history, indent=1))
    plot_history(history, out_dir / "curves.png")
    return _finish(model, config, out_dir, version, extra or {}, history, progress, device)


def _run_stage(
    model: LumbarNet,
    config: TrainConfig,
    index: int,
    stage: StageConfig,
    samples: list[ModelSample],
    pos_weight: torch.Tensor,
    history: list[dict[str, float]],
    resume_path: Path,
    first_step: int,
    optimizer_state: dict[str, Any] | None,
    progress: bool,
) -> None:
    model.train()
    optimizer = torch.optim.AdamW(
        select_trainable(model, stage.trainable), lr=stage.lr, weight_decay=0.05
    )
    hold_frozen_statistics(model)
    if optimizer_state:  # empty when the run stopped at a stage boundary
        optimizer.load_state_dict(optimizer_state)
    pool = stage_pool(stage.name, samples)
    bar = tqdm(range(first_step, stage.steps), desc=stage.name, disable=not progress)
    running: dict[str, torch.Tensor] = {}
    for step in bar:
        rng = random.Random(config.seed * 1_000_003 + index * 100_003 + step)
        batch = rng.sample(pool, min(stage.batch_studies, len(pool)))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(stage, step)
        losses = stage_loss(model, stage, batch, rng, pos_weight, config.abnormality_weight)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        for key, value in losses.items():
            running[key] = running.get(key, 0.0) + value.detach()  # no device sync per step
        if (step + 1) % config.log_every == 0 or step + 1 == stage.steps:
            count = (step % config.log_every) + 1
            point = {k: float(v) / count for k, v in running.items()}
            history.append({"stage": float(index), "step": float(step + 1), **point})
            bar.set_postfix({k: f"{v:.3f}" for k, v in point.items()})
            running = {}
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == stage.steps:
            done = step + 1 == stage.steps
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict() if not done else {},
                    "stage": index + 1 if done else index,
                    "step": 0 if done else step + 1,
                    "history": json.dumps(history),
                },
                resume_path,
            )
    select_trainable(model, ())


def transfer_weights(model: LumbarNet, state: dict[str, torch.Tensor]) -> list[str]:
    """Load the tensors of ``state`` whose names and shapes match ``model``'s; return the names
    of the model's tensors left as they were.

    Raises:
        ValueError: if no tensor matches.
    """
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise ValueError("no tensor of the checkpoint fits this model")
    model.load_state_dict(matching, strict=False)
    return sorted(set(own) - set(matching))


def hold_frozen_statistics(model: torch.nn.Module) -> None:
    """Put the BatchNorm layers whose parameters are all frozen in eval mode, so that a stage
    training part of the network leaves the running statistics of the rest as they were.

    Raises:
        Nothing.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.eval()


def select_trainable(model: LumbarNet, prefixes: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """Unfreeze the parameters whose names start with one of ``prefixes`` (all when empty),
    freeze the rest, and return the trainable ones.

    Raises:
        ValueError: if a prefix names no parameter.
    """
    names = [name for name, _ in model.named_parameters()]
    unknown = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if unknown:
        raise ValueError(f"no parameters named {', '.join(unknown)}")
    selected = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not prefixes or name.startswith(prefixes))
        if parameter.requires_grad:
            selected.append(parameter)
    return selected


def stage_pool(name: str, samples: list[ModelSample]) -> list[ModelSample]:
    """The samples a stage can use: labelled (supervised, slices), with reports (contrastive),
    all (mim).

    Raises:
        ValueError: if no sample fits the stage.
    """
    if name in ("supervised", "slices"):
        pool = [s for s in samples if s.labels is not None]
    elif name == "contrastive":
        pool = [s for s in samples if s.report_embedding is not None]
    else:
        pool = list(samples)
    if not pool:
        raise ValueError(f"no training sample fits the {name} stage")
    return pool


def _finish(
    model: LumbarNet,
    config: TrainConfig,
    out_dir: Path,
    version: str,
    extra: dict[str, str],
    history: list[dict[str, float]],
    progress: bool,
    device: str,
) -> TrainResult:
    scheme = load_label_scheme()
    model.eval()
    meta = CheckpointMeta(
        config=config.model,
        model_version=version,
        disc_values=tuple(d.value for d in scheme.discs),
        level_names=tuple(d.name for d in scheme.discs),
        abnormality_keys=tuple(a.key for a in scheme.abnormalities),
        thresholds={a.key: 0.5 for a in scheme.abnormalities},
        extra={**extra, "train_config": config_to_json(config)},
    )
    predictor = Predictor(model, meta, "", torch.device(device))
    validation = list(phantom_samples(range(*config.val_seeds), config.phantom_size))
    meta = replace(meta, thresholds=tune_thresholds(predictor, validation, config.target_fpr))
    path = out_dir / "model.safetensors"
    sha = save_checkpoint(model, meta, path)
    if progress:
        print(f"saved {path} sha256={sha}")
    return TrainResult(path, sha, history)


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    """Plot every logged loss against the global step, one line per key and stage.

    Raises:
        OSError: if the PNG cannot be written.
    """
    figure, axis = plt.subplots(figsize=(8, 4.5))
    offsets: dict[int, float] = {}
    total = 0.0
    for point in history:
        stage = int(point["stage"])
        if stage not in offsets:
            offsets[stage] = total
        total = max(total, offsets[stage] + point["step"])
    keys = sorted({k for p in history for k in p if k not in ("stage", "step")})
    for number, key in enumerate(keys):
        labelled = False
        for stage, offset in offsets.items():
            points = [
                (offset + p["step"], p[key])
                for p in history
                if key in p and int(p["stage"]) == stage
            ]
            if points:
                label = None if labelled else key
                axis.plot(*zip(*points, strict=True), color=f"C{number}", label=label)
                labelled = True
    for offset in list(offsets.values())[1:]:
        axis.axvline(offset, color="grey", linewidth=0.5, linestyle=":")
    axis.set_xlabel("global step")
    axis.set_ylabel("loss")
    axis.set_yscale("log")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
