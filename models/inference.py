"""Inference: a :class:`Predictor` turns a study's volumes (numpy) into a :class:`StudyPrediction`.

The SAG_T2 series is the reference: the label map comes back in its geometry, with its exact shape.
SAG_T1 is used as the second channel when present (else T2 is duplicated).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import CheckpointMeta, file_sha256, load_checkpoint
from models.labels import load_label_scheme
from models.network import LumbarNet, StudyOutput
from models.paths import DEFAULT_CHECKPOINT
from models.postprocess import disc_height_mm, largest_components, relabel_levels
from models.preprocess import (
    SquareGeometry,
    from_model_space,
    model_geometry,
    stack_channels,
    to_model_space,
)
from models.quality import NOT_ASSESSED, SACRUM, QualityCheck, check_study, level_confidences
from models.volume import REFERENCE_ROLE, SECOND_ROLE, VolumeInput

WARM_UP_SHAPE = (16, 512, 512)
"""A standard sagittal series (slices, rows, cols): the shape :meth:`Predictor.warm_up` runs."""


@dataclass
class StudyPrediction:
    """Everything the model says about one study (numpy and plain Python only)."""

    label_map: np.ndarray
    reference_role: str
    level_probabilities: dict[str, dict[str, float]]
    level_calls: dict[str, dict[str, bool]]
    measurements: dict[str, dict[str, float]]
    structures_found: list[str]
    model_name: str
    model_version: str
    config_hash: str
    checkpoint_sha256: str
    level_confidence: dict[str, float] = field(default_factory=dict)
    """Disc level -> confidence in [0, 1] (:func:`models.quality.level_confidences`), for the
    levels in ``level_probabilities``."""
    quality: QualityCheck = NOT_ASSESSED
    """The study-level check (:func:`models.quality.check_study`)."""


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to torch.

    Raises:
        RuntimeError: if a CUDA device is asked for and none is available.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA requested but not available")
    return resolved


class Predictor:
    """A loaded model ready to analyse studies."""

    def __init__(
        self,
        model: LumbarNet,
        meta: CheckpointMeta,
        checkpoint_sha256: str,
        device: torch.device,
        batch_size: int = 16,
    ) -> None:
        """Wrap a model; prefer :meth:`load`.

        Raises:
            Nothing.
        """
        self.model = model.to(device).eval()
        self.meta = meta
        self.checkpoint_sha256 = checkpoint_sha256
        self.device = device
        self.batch_size = batch_size
        scheme = load_label_scheme()
        self._names = {s.value: s.name for s in scheme.structures}
        self._vertebrae = [s.value for s in scheme.vertebrae]
        self._discs = [s.value for s in scheme.discs]
        self._sacrum = next(s.value for s in scheme.vertebrae if s.name == SACRUM)

    @classmethod
    def load(cls, checkpoint: str | Path | None = None, device: str = "auto") -> Predictor:
        """Load a checkpoint; None means the shipped one in ``models/checkpoints/``.

        Raises:
            FileNotFoundError: if the checkpoint does not exist.
            ValueError: if it is not a valid checkpoint.
            RuntimeError: if the device is unavailable.
        """
        path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
        model, meta = load_checkpoint(path)
        return cls(model, meta, file_sha256(path), resolve_device(device))

    def warm_up(self, shape: tuple[int, int, int] = WARM_UP_SHAPE) -> None:
        """Run one synthetic study of ``shape`` (slices, rows, cols) through :meth:`predict`, so
        that the first real study does not pay for the lazy set-up of the kernels and of the
        memory its tensors take. The model is not changed (evaluation mode, no gradients).

        Raises:
            ValueError: if ``shape`` has a zero dimension.
        """
        if min(shape) < 1:
            raise ValueError("the warm-up volume is empty")
        pixels = np.random.default_rng(0).random(shape, dtype=np.float32)
        volume = VolumeInput(
            pixels=pixels,
            pixel_spacing=(1.0, 1.0),
            slice_positions_mm=np.arange(shape[0], dtype=np.float32),
            orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
        )
        self.predict({REFERENCE_ROLE: volume, SECOND_ROLE: volume})

    def predict(self, volumes: Mapping[str, VolumeInput]) -> StudyPrediction:
        """Analyse one study; ``volumes`` maps series roles (SAG_T2 required) to volumes.

        Raises:
            ValueError: if there is no SAG_T2 volume or it is not 3D.
        """
        return self.analyse(volumes)[0]

    @torch.no_grad()
    def analyse(self, volumes: Mapping[str, VolumeInput]) -> tuple[StudyPrediction, StudyOutput]:
        """The prediction, and the network outputs behind it (model space, levels located by the
        post-processed segmentation) for what needs the embeddings.

        Raises:
            ValueError: if there is no SAG_T2 volume or it is not 3D.
        """
        output, geometry, model_labels = self._study_output(volumes)
        ref = volumes[REFERENCE_ROLE]
        label_map = self._clean(
            np.stack(
                [
                    channel_argmax(from_model_space(s[None], geometry)[0]).cpu().numpy()
                    for s in output.seg_logits
                ]
            ),
            ref.orientation,
            ref.pixel_spacing,
        ).astype(np.uint8)
        confidences, quality = self._assess(output.seg_logits, model_labels)
        prediction = self._prediction(
            label_map, output.level_logits, output.level_valid, ref, confidences, quality
        )
        return prediction, output

    def _assess(
        self, logits: torch.Tensor, labels: torch.Tensor
    ) -> tuple[dict[str, float], QualityCheck]:
        """Disc confidences and the study check (:mod:`models.quality`) from model space."""
        probabilities = torch.softmax(logits.float(), 1)
        discs = dict(zip(self.meta.level_names, self.meta.disc_values, strict=True))
        confidences = level_confidences(probabilities, labels, discs)
        quality = check_study(
            probabilities,
            logits.argmax(1),
            labels,
            [*self._vertebrae, *self._discs],
            confidences,
            self._sacrum,
        )
        return confidences, quality

    def _study_output(
        self, volumes: Mapping[str, VolumeInput]
    ) -> tuple[StudyOutput, SquareGeometry, torch.Tensor]:
        if REFERENCE_ROLE not in volumes:
            raise ValueError(f"a {REFERENCE_ROLE} volume is required")
        ref = volumes[REFERENCE_ROLE]
        if ref.pixels.ndim != 3:
            raise ValueError("volumes must be (slices, rows, cols)")
        t1 = volumes.get(SECOND_ROLE)
        config = self.meta.config
        stacked = stack_channels(ref.pixels, None if t1 is None else t1.pixels, config.in_chans)
        geometry = model_geometry(
            ref.pixels.shape[1], ref.pixels.shape[2], ref.pixel_spacing, config, training=False
        )
        images = to_model_space(torch.from_numpy(stacked), geometry, "bilinear").to(self.device)
        positions = torch.as_tensor(ref.slice_positions_mm, dtype=torch.float32, device=self.device)
        logits = torch.cat([self.model.segment(c) for c in images.split(self.batch_size)])
        scale = geometry.model_scale
        model_spacing = (ref.pixel_spacing[0] * scale, ref.pixel_spacing[1] * scale)
        model_labels = torch.from_numpy(
            self._clean(logits.argmax(1).cpu().numpy(), ref.orientation, model_spacing)
        ).to(self.device)
        levels = self.model.levels(images, model_labels.long(), positions)
        return StudyOutput.of(levels, logits), geometry, model_labels

    def _clean(
        self, labels: np.ndarray, orientation: tuple[float, ...], spacing: tuple[float, float]
    ) -> np.ndarray:
        spine = set(self._vertebrae) | set(self._discs)
        cleaned = largest_components(labels, [v for v in self._names if v not in spine])
        return relabel_levels(cleaned, self._vertebrae, self._discs, orientation, spacing)

    def _prediction(
        self,
        label_map: np.ndarray,
        level_logits: torch.Tensor,
        level_valid: torch.Tensor,
        ref: VolumeInput,
        confidences: dict[str, float],
        quality: QualityCheck,
    ) -> StudyPrediction:
        meta = self.meta
        probabilities = torch.sigmoid(level_logits).cpu().numpy()
        level_probabilities: dict[str, dict[str, float]] = {}
        level_calls: dict[str, dict[str, bool]] = {}
        measurements: dict[str, dict[str, float]] = {}
        for i, (level, value) in enumerate(zip(meta.level_names, meta.disc_values, strict=True)):
            if not bool(level_valid[i]):
                continue
            level_probabilities[level] = {
                k: float(probabilities[i, j]) for j, k in enumerate(meta.abnormality_keys)
            }
            level_calls[level] = {
                k: p >= meta.thresholds.get(k, 0.5) for k, p in level_probabilities[level].items()
            }
            height = disc_height_mm(label_map == value, ref.pixel_spacing)
            if np.isfinite(height):
                measurements[level] = {"disc_height_mm": height}
        found = sorted(int(v) for v in np.unique(label_map) if int(v) in self._names)
        return StudyPrediction(
            label_map=label_map,
            reference_role=REFERENCE_ROLE,
            level_probabilities=level_probabilities,
            level_calls=level_calls,
            measurements=measurements,
            structures_found=[self._names[v] for v in found],
            model_name=meta.model_name,
            model_version=meta.model_version,
            config_hash=meta.config_hash,
            checkpoint_sha256=self.checkpoint_sha256,
            level_confidence={level: confidences.get(level, 0.0) for level in level_probabilities},
            quality=quality,
        )


def channel_argmax(logits: torch.Tensor) -> torch.Tensor:
    """``logits.argmax(0)`` for a (C, H, W) tensor, first maximum on ties, several times faster
    on CPU: a running maximum over the channels instead of a strided reduction."""
    best = logits[0].clone()
    index = torch.zeros(logits.shape[1:], dtype=torch.long, device=logits.device)
    for channel in range(1, logits.shape[0]):
        index.masked_fill_(logits[channel] > best, channel)
        best = torch.maximum(best, logits[channel])
    return index
