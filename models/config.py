"""Typed model and training configurations, stored as JSON (open_clip style).

Every key of the JSON files in ``models/configs/`` is a field of one of these dataclasses; the
docstrings say what each one means. Configs are frozen: build a new one with
:func:`dataclasses.replace` to change a value.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).with_name("configs")
STAGE_NAMES = ("mim", "contrastive", "supervised", "slices")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the lumbar network.

    Attributes:
        image_encoder: registered image encoder name (see ``models.image_encoders``).
        tiny: build the encoder's tiny variant (tests only).
        in_chans: input channels (1 = T2 only, 2 = T1 + T2).
        img_size: square model input size in pixels (in training; at inference the minimum).
        spacing_mm: model pixel size in mm. 0 stretches every slice's square to ``img_size``
            (releases up to 0.6.0); > 0 resamples to this pixel size (anti-aliased), so
            anatomy keeps its size in pixels whatever the field of view and matrix, and pads
            the square to a multiple of 32 pixels at inference, or pads or crops it to
            ``img_size`` in training (see ``models.preprocess.model_geometry``).
        decoder_channels: channels of the U-Net decoder at the encoder's scales (its
            full-resolution stages have fewer; see ``models.segmentation.UNetDecoder``).
        embed_dim: dimension of the shared image/text space.
        text_dim: dimension of the raw text encoder embeddings (384 for MiniLM).
        projection: text/image projection head, ``"linear"`` or ``"mlp"``.
        seg_head: ``"text"`` (pixel-prompt dot product), ``"universal"`` (per-class dynamic
            heads from a text controller) or ``"visual"`` (learned class vectors, the ablation).
        abnormality_queries: ``"text"`` (abnormality prompt embeddings, projected) or
            ``"visual"`` (learned vectors, the ablation of the abnormality path).
        num_structures: foreground classes (label values 1..num_structures).
        level_crop_rows: height of each level's disc-aligned crop (model pixels, across the disc).
        level_crop_cols: width of each level's crop (model pixels, along the disc).
        level_crop_slices: at most this many central slices through a disc are cropped.
        level_crop_width: channels of the first block of the level crop CNN.
        pool_heads: attention heads of the slice pooling.
        prompt_offsets: add learnable per-class offsets to the structure text embeddings.
        center_prompts: subtract the mean structure embedding before projecting. Level prompts
            are nearly collinear (cosine ~0.9 with MiniLM); centring keeps only what tells the
            classes apart, so text-initialised queries start as distinct as learned ones.
        prompt_variants_per_query: language augmentation in training: each class query is the
            mean of this many randomly drawn prompt variants (1 = one variant, the noisiest).
    """

    image_encoder: str = "convnextv2_atto"
    tiny: bool = False
    in_chans: int = 2
    img_size: int = 128
    spacing_mm: float = 0.0
    decoder_channels: int = 64
    embed_dim: int = 64
    text_dim: int = 384
    projection: str = "linear"
    seg_head: str = "text"
    abnormality_queries: str = "text"
    num_structures: int = 20
    level_crop_rows: int = 32
    level_crop_cols: int = 48
    level_crop_slices: int = 6
    level_crop_width: int = 24
    pool_heads: int = 4
    prompt_offsets: bool = False
    center_prompts: bool = True
    prompt_variants_per_query: int = 1


@dataclass(frozen=True)
class StageConfig:
    """One training stage.

    Attributes:
        name: ``"mim"`` (masked-image pretraining), ``"contrastive"`` (image-report soft CLIP),
            ``"supervised"`` (segmentation + abnormalities, study by study) or ``"slices"``
            (segmentation alone, on slices drawn at random across the step's studies).
        steps: optimiser steps.
        lr: peak learning rate (cosine decay after a short warm-up).
        batch_studies: studies per step.
        max_slices: at most this many sagittal slices per study per step: the central ones,
            or in a ``"slices"`` stage, ones drawn at random.
        precision: ``"fp32"``, or ``"bf16"``: the forward pass runs under bfloat16 autocast
            (weights, optimiser state and losses stay float32). About 1.8x faster per step on
            CPUs with AVX-512 BF16.
        trainable: names of the parameters (prefixes, e.g. ``"series_proj"``) this stage
            trains; the others stay frozen. Empty = all of them.
        segmentation: supervised stages only: False trains the abnormality path alone (levels
            located by the labels), with no segmentation forward pass or loss.
    """

    name: str
    steps: int
    lr: float = 2e-3
    batch_studies: int = 1
    max_slices: int = 12
    precision: str = "fp32"
    trainable: tuple[str, ...] = ()
    segmentation: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """A full training recipe.

    Attributes:
        model: the architecture.
        stages: stages run in order.
        train_seeds: phantom seeds ``[start, stop)`` used for training.
        val_seeds: phantom seeds ``[start, stop)`` used to tune thresholds (never trained on).
        phantom_size: phantom preset (``"small"``, ``"standard"``, ``"randomised"``; see
            ``models.robustness.phantom_preset``).
        text_encoder: local HF BERT directory; empty = the packaged MiniLM.
        target_fpr: false-positive rate the per-class thresholds are tuned to.
        abnormality_weight: weight of the abnormality loss in the supervised stage.
        seed: torch seed.
        log_every: steps between log lines / curve points.
        checkpoint_every: steps between resumable checkpoints.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    stages: tuple[StageConfig, ...] = (StageConfig(name="supervised", steps=300),)
    train_seeds: tuple[int, int] = (1000, 1200)
    val_seeds: tuple[int, int] = (5000, 5020)
    phantom_size: str = "small"
    text_encoder: str = ""
    target_fpr: float = 0.05
    abnormality_weight: float = 1.0
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100


def model_config_from_dict(raw: dict[str, Any]) -> ModelConfig:
    """Build a :class:`ModelConfig`, rejecting unknown keys.

    Raises:
        ValueError: on an unknown key.
    """
    _check_keys(ModelConfig, raw)
    return ModelConfig(**raw)


def train_config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed JSON.

    Raises:
        ValueError: on an unknown key or stage name.
    """
    _check_keys(TrainConfig, raw)
    values = dict(raw)
    if "model" in values:
        values["model"] = model_config_from_dict(values["model"])
    if "stages" in values:
        stages = []
        for stage in values["stages"]:
            _check_keys(StageConfig, stage)
            if stage["name"] not in STAGE_NAMES:
                raise ValueError(f"unknown stage {stage['name']!r}")
            if not stage.get("segmentation", True) and stage["name"] != "supervised":
                raise ValueError("only a supervised stage can leave out segmentation")
            if stage.get("precision", "fp32") not in PRECISIONS:
                raise ValueError(f"unknown precision {stage['precision']!r}")
            stages.append(StageConfig(**{**stage, "trainable": tuple(stage.get("trainable", ()))}))
        values["stages"] = tuple(stages)
    for key in ("train_seeds", "val_seeds"):
        if key in values:
            values[key] = tuple(values[key])
    return TrainConfig(**values)


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a training config; a bare name means ``models/configs/<name>.json``.

    Raises:
        OSError: if the file cannot be read.
        ValueError: if the content is not a valid config.
    """
    candidate = Path(path)
    if not candidate.suffix:
        candidate = CONFIG_DIR / f"{path}.json"
    return train_config_from_dict(json.loads(candidate.read_text()))


def config_to_json(config: ModelConfig | TrainConfig) -> str:
    """Serialise a config to canonical JSON (sorted keys).

    Raises:
        TypeError: if a field cannot be serialised.
    """
    raw = asdict(config)
    model = raw.get("model", raw) if isinstance(config, TrainConfig) else raw
    for name, absent in _ADDED_LATER.items():
        if model.get(name) == absent:
            del model[name]
    return json.dumps(raw, sort_keys=True)


#: Model fields added after a release, left out of the JSON (and the hash) while they hold the
#: value that means "as before", so earlier checkpoints keep their config hash.
_ADDED_LATER: dict[str, Any] = {"spacing_mm": 0.0}


def config_hash(config: ModelConfig) -> str:
    """Short stable hash of a model config (first 16 hex digits of its sha256).

    Raises:
        TypeError: if a field cannot be serialised.
    """
    return hashlib.sha256(config_to_json(config).encode()).hexdigest()[:16]


def _check_keys(cls: type, raw: dict[str, Any]) -> None:
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
