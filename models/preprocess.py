"""Model-space input: intensity normalisation and the square resize, and its exact inverse.

A slice of any shape is zero-padded (centred) to a square and resized to the model size (or to a
fixed pixel size in mm, then padded); the inverse undoes both, so label maps come back in the
input geometry with the input's exact shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as nnf

from models.config import ModelConfig


@dataclass(frozen=True)
class SquareGeometry:
    """How one (rows, cols) slice maps to the model's square input.

    The slice is zero-padded (centred) to a square of ``side`` pixels, resized to ``scaled``
    pixels (``size`` when 0), then centre-padded or cropped to ``size``.
    """

    rows: int
    cols: int
    size: int
    scaled: int = 0

    @property
    def side(self) -> int:
        """Side of the padded square."""
        return max(self.rows, self.cols)

    @property
    def offset(self) -> tuple[int, int]:
        """Top/left padding."""
        return (self.side - self.rows) // 2, (self.side - self.cols) // 2

    @property
    def resized(self) -> int:
        """Side of the square after the resize."""
        return self.scaled or self.size

    @property
    def margin(self) -> int:
        """Padding (> 0) or cropping (< 0) on each side of the resized square to reach ``size``."""
        return (self.size - self.resized) // 2

    @property
    def model_scale(self) -> float:
        """Input pixels per model pixel."""
        return self.side / self.resized


def model_geometry(
    rows: int, cols: int, pixel_spacing: tuple[float, float], config: ModelConfig, training: bool
) -> SquareGeometry:
    """The geometry the model config asks for (see ``ModelConfig.spacing_mm``).

    At inference nothing is cropped: the square grows to the next multiple of 32 pixels (the
    encoder's largest stride) above ``img_size``; in training it is exactly ``img_size`` so
    slices of different studies batch together.

    Raises:
        ValueError: if a pixel spacing is not positive.
    """
    if config.spacing_mm <= 0:
        return SquareGeometry(rows, cols, config.img_size)
    if min(pixel_spacing) <= 0:
        raise ValueError("pixel spacing must be positive")
    extent_mm = max(rows, cols) * float(np.mean(pixel_spacing))
    scaled = max(1, round(extent_mm / config.spacing_mm))
    size = config.img_size if training else max(config.img_size, -(-scaled // 32) * 32)
    return SquareGeometry(rows, cols, size, scaled)


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
    """Pad (S, C, rows, cols) to a square, resize and pad or crop to (S, C, size, size).

    ``mode`` is ``"bilinear"`` for images and ``"nearest"`` for labels (pass labels as float).
    Images are anti-aliased when a geometry with ``scaled`` shrinks them.

    Raises:
        ValueError: if the volume's shape does not match the geometry.
    """
    if volume.shape[-2:] != (geometry.rows, geometry.cols):
        raise ValueError("volume shape does not match geometry")
    top, left = geometry.offset
    side, resized = geometry.side, geometry.resized
    square = nnf.pad(volume, (left, side - geometry.cols - left, top, side - geometry.rows - top))
    if side != resized:
        kwargs: dict[str, bool] = {}
        if mode == "bilinear":
            kwargs = {"align_corners": False, "antialias": bool(geometry.scaled) and resized < side}
        elif mode == "nearest":
            mode = "nearest-exact"  # torch's "nearest" shifts labels by up to half a pixel
        square = nnf.interpolate(square, size=(resized, resized), mode=mode, **kwargs)
    margin = geometry.margin
    if margin == 0 and resized == geometry.size:
        return square
    if margin >= 0:
        extra = geometry.size - resized - margin
        return nnf.pad(square, (margin, extra, margin, extra))
    cut = -margin
    return square[..., cut : cut + geometry.size, cut : cut + geometry.size]


def from_model_space(logits: torch.Tensor, geometry: SquareGeometry) -> torch.Tensor:
    """Inverse of :func:`to_model_space` for (S, C, size, size) logits -> (S, C, rows, cols).

    Raises:
        ValueError: if the logits are not at the model size, or the geometry cropped (the
            cropped border was never seen; only training geometries crop).
    """
    if logits.shape[-2:] != (geometry.size, geometry.size):
        raise ValueError("logits are not at the model size")
    margin, resized = geometry.margin, geometry.resized
    if margin < 0:
        raise ValueError("a cropping geometry has no inverse")
    logits = logits[..., margin : margin + resized, margin : margin + resized]
    side = geometry.side
    if side != resized:
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
