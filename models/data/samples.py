"""Dataset-independent study samples and their model-space form.

Every loader (phantom, SPIDER, RSNA, DICOM folders) produces :class:`StudySample`; training and
evaluation only see :class:`ModelSample`, produced by :func:`to_model_sample` with the same
preprocessing the :class:`~models.inference.Predictor` uses.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.config import ModelConfig
from models.labels import LabelScheme
from models.preprocess import model_geometry, stack_channels, to_model_space


@dataclass
class StudySample:
    """One study in its own geometry (the sagittal T2 series is the reference).

    Attributes:
        study_id: identifier, unique within a dataset.
        t2: (S, R, C) sagittal T2 pixels.
        t1: (S, R, C) sagittal T1 pixels on the same grid, or None.
        labels: (S, R, C) label values per the label scheme, or None (unlabelled).
        annotated: label values annotated in ``labels`` (others are unknown); None = all.
        pixel_spacing: (row, col) mm.
        slice_positions_mm: (S,) positions along the slice normal.
        orientation: ImageOrientationPatient.
        findings: disc level -> abnormality key -> present, or None (unknown).
        report: report text, or None.
    """

    study_id: str
    t2: np.ndarray
    t1: np.ndarray | None
    labels: np.ndarray | None
    annotated: tuple[int, ...] | None
    pixel_spacing: tuple[float, float]
    slice_positions_mm: np.ndarray
    orientation: tuple[float, ...]
    findings: dict[str, dict[str, bool]] | None = None
    report: str | None = None


@dataclass
class ModelSample:
    """One study in model space (what training steps consume).

    Attributes:
        images: (S, in_chans, size, size) float32 in [0, 1].
        labels: (S, size, size) int64, or None.
        annotated: (num_structures + 1,) bool (index 0 = background, always True).
        positions_mm: (S,) float32.
        findings: (L, K) float32 0/1 per disc level (cranio-caudal) and abnormality.
        findings_valid: (L,) bool, levels with known findings.
        report_embedding: (text_dim,) raw text embedding of the report, or None.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    annotated: torch.Tensor
    positions_mm: torch.Tensor
    findings: torch.Tensor
    findings_valid: torch.Tensor
    report_embedding: torch.Tensor | None = None

    def to(self, device: str | torch.device) -> ModelSample:
        """This sample with every tensor on ``device``."""
        moved: dict[str, Any] = {
            f.name: None if (value := getattr(self, f.name)) is None else value.to(device)
            for f in fields(self)
        }
        return ModelSample(**moved)


def findings_matrix(
    findings: dict[str, dict[str, bool]] | None, scheme: LabelScheme
) -> tuple[np.ndarray, np.ndarray]:
    """(L, K) 0/1 matrix and (L,) validity from a findings dict, levels cranio-caudal.

    Raises:
        Nothing.
    """
    levels = [d.name for d in scheme.discs]
    keys = [a.key for a in scheme.abnormalities]
    matrix = np.zeros((len(levels), len(keys)), dtype=np.float32)
    valid = np.zeros(len(levels), dtype=bool)
    for i, level in enumerate(levels):
        if findings is not None and level in findings:
            valid[i] = True
            matrix[i] = [float(findings[level].get(k, False)) for k in keys]
    return matrix, valid


def to_model_sample(sample: StudySample, scheme: LabelScheme, config: ModelConfig) -> ModelSample:
    """Preprocess a study exactly as the predictor does.

    Raises:
        ValueError: if the labels do not match the T2 shape.
    """
    rows, cols = sample.t2.shape[1:]
    geometry = model_geometry(rows, cols, sample.pixel_spacing, config, training=True)
    stacked = stack_channels(sample.t2, sample.t1, config.in_chans)
    images = to_model_space(torch.from_numpy(stacked), geometry, "bilinear")
    labels = None
    if sample.labels is not None:
        if sample.labels.shape != sample.t2.shape:
            raise ValueError("labels do not match the T2 volume")
        raw = torch.from_numpy(sample.labels.astype(np.float32))[:, None]
        labels = to_model_space(raw, geometry, "nearest")[:, 0].long()
    num = max(s.value for s in scheme.structures)
    annotated = torch.zeros(num + 1, dtype=torch.bool)
    annotated[0] = True
    if sample.annotated is None:
        annotated[:] = True
    else:
        annotated[list(sample.annotated)] = True
    matrix, valid = findings_matrix(sample.findings, scheme)
    return ModelSample(
        images=images.float(),
        labels=labels,
        annotated=annotated,
        positions_mm=torch.as_tensor(sample.slice_positions_mm, dtype=torch.float32),
        findings=torch.from_numpy(matrix),
        findings_valid=torch.from_numpy(valid),
    )


def save_model_sample(sample: ModelSample, path: Path) -> None:
    """Store a model sample as a compressed ``.npz`` (images as float16).

    Raises:
        OSError: if the file cannot be written.
    """
    arrays: dict[str, np.ndarray] = {
        "images": sample.images.half().numpy(),
        "annotated": sample.annotated.numpy(),
        "positions_mm": sample.positions_mm.numpy(),
        "findings": sample.findings.numpy(),
        "findings_valid": sample.findings_valid.numpy(),
    }
    if sample.labels is not None:
        arrays["labels"] = sample.labels.to(torch.uint8).numpy()
    if sample.report_embedding is not None:
        arrays["report_embedding"] = sample.report_embedding.numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    save: Any = np.savez_compressed  # numpy's stub mistypes **arrays
    save(path, **arrays)


def load_model_sample(path: Path) -> ModelSample:
    """Read a sample written by :func:`save_model_sample`.

    Raises:
        OSError: if the file cannot be read.
        KeyError: if it lacks a required array.
    """
    with np.load(path) as data:
        return ModelSample(
            images=torch.from_numpy(data["images"].astype(np.float32)),
            labels=torch.from_numpy(data["labels"].astype(np.int64)) if "labels" in data else None,
            annotated=torch.from_numpy(data["annotated"]),
            positions_mm=torch.from_numpy(data["positions_mm"]),
            findings=torch.from_numpy(data["findings"]),
            findings_valid=torch.from_numpy(data["findings_valid"]),
            report_embedding=(
                torch.from_numpy(data["report_embedding"]) if "report_embedding" in data else None
            ),
        )
