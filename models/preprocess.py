"""Model-space input: intensity normalisation and the square resize, and its exact inverse.

A slice of any shape is zero-padded (centred) to a square and resized to the model size; the
inverse resizes model-space logits back to the square and crops, so label maps come back in the
input geometry with the input's exact shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as nnf


@dataclass(frozen=True)
class SquareGeometry:
    """How one (rows, cols) slice maps to the model's square input."""

    rows: int
    cols: int
    size: int

    @property
    def side(self) -> int:
        """Side of the padded square."""
        return max(self.rows, self.cols)

    @property
    def offset(self) -> tuple[int, int]:
        """Top/left padding."""
        return (self.side - self.rows) // 2, (self.side - self.cols) // 2


def normalise_intensity(volume: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Per-series percentile normalisation to [0, 1] (float32).

    Raises:
        ValueError: if the volume is empty.
    """
    if volume.size == 0:
        raise ValueError("empty volume")
    lo, hi = np.percentile(volume, [low, high])
    scaled = (volume.astype(np.float32) - np.float32(lo)) / np.float32(max(float(hi - lo), 1e-6))
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def to_model_space(volume: torch.Tensor, geometry: SquareGeometry, mode: str) -> torch.Tensor:
    """Pad (S, C, rows, cols) to a square and resize to (S, C, size, size).

    ``mode`` is ``"bilinear"`` for images and ``"nearest"`` for labels (pass labels as float).

    Raises:
        ValueError: if the volume's shape does not match the geometry.
    """
    if volume.shape[-2:] != (geometry.rows, geometry.cols):
        raise ValueError("volume shape does not match geometry")
    top, left = geometry.offset
    side = geometry.side
    padded = nnf.pad(volume, (left, side - geometry.cols - left, top, side - geometry.rows - top))
    if side == geometry.size:
        return padded
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return nnf.interpolate(padded, size=(geometry.size, geometry.size), mode=mode, **kwargs)


def from_model_space(logits: torch.Tensor, geometry: SquareGeometry) -> torch.Tensor:
    """Inverse of :func:`to_model_space` for (S, C, size, size) logits -> (S, C, rows, cols).

    Raises:
        ValueError: if the logits are not at the model size.
    """
    if logits.shape[-2:] != (geometry.size, geometry.size):
        raise ValueError("logits are not at the model size")
    side = geometry.side
    if side != geometry.size:
        logits = nnf.interpolate(logits, size=(side, side), mode="bilinear", align_corners=False)
    top, left = geometry.offset
    return logits[..., top : top + geometry.rows, left : left + geometry.cols]


def stack_channels(t2: np.ndarray, t1: np.ndarray | None, in_chans: int) -> np.ndarray:
    """Normalise and stack (S, R, C) series into (S, in_chans, R, C): [T1, T2] or [T2].

    A missing or mismatched T1 is replaced by T2 (the missing-modality fallback).

    Raises:
        ValueError: if ``in_chans`` is not 1 or 2.
    """
    t2n = normalise_intensity(t2)
    if in_chans == 1:
        return t2n[:, None]
    if in_chans != 2:
        raise ValueError("in_chans must be 1 or 2")
    t1n = normalise_intensity(t1) if t1 is not None and t1.shape == t2.shape else t2n
    return np.stack([t1n, t2n], axis=1)
