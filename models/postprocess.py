"""Post-processing of label maps and measurements derived from them.

- Largest connected component per class (3D).
- Cranio-caudal order: vertebra (and disc) classes are relabelled so that the order of their
  centroids from head to feet matches the anatomical order, keeping the set of predicted levels.
  This fixes level swaps, the dominant error when level prompts are nearly collinear.
- Disc height from the mask: area of the largest disc cross-section / its long-axis length.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def largest_components(labels: np.ndarray, values: list[int]) -> np.ndarray:
    """Keep only the largest 3D connected component of each label value.

    Raises:
        Nothing.
    """
    out = labels.copy()
    for value in values:
        mask = labels == value
        if not mask.any():
            continue
        components, count = ndimage.label(mask)
        if count > 1:
            sizes = np.bincount(components.ravel())[1:]
            out[mask & (components != int(np.argmax(sizes)) + 1)] = 0
    return out


def superior_coordinate(
    shape: tuple[int, int], orientation: tuple[float, ...], spacing: tuple[float, float]
) -> np.ndarray:
    """Head-ward (patient +z, LPS) coordinate in mm of every pixel of a (rows, cols) slice.

    Raises:
        ValueError: if ``orientation`` does not have 6 values.
    """
    if len(orientation) != 6:
        raise ValueError("orientation must have 6 direction cosines")
    rows = np.arange(shape[0])[:, None] * spacing[0] * orientation[5]
    cols = np.arange(shape[1])[None, :] * spacing[1] * orientation[2]
    return rows + cols


def enforce_level_order(
    labels: np.ndarray, ordered_values: list[int], superior: np.ndarray
) -> np.ndarray:
    """Relabel the classes in ``ordered_values`` (cranial first) by centroid height.

    The predicted classes keep their set; the most cranial class centroid gets the most cranial
    of the predicted values, and so on.

    Raises:
        ValueError: if ``superior`` does not match the in-plane shape.
    """
    if superior.shape != labels.shape[1:]:
        raise ValueError("superior map does not match the slices")
    present = [v for v in ordered_values if (labels == v).any()]
    heights = [float(superior[np.nonzero(labels == v)[1:]].mean()) for v in present]
    by_height = [v for _, v in sorted(zip(heights, present, strict=True), key=lambda p: -p[0])]
    out = labels.copy()
    for source, target in zip(by_height, present, strict=True):
        if source != target:
            out[labels == source] = target
    return out


def disc_height_mm(mask: np.ndarray, spacing: tuple[float, float]) -> float:
    """Disc height on the slice with the largest disc area: area / long-axis length.

    Args:
        mask: (S, R, C) bool mask of one disc.
        spacing: (row, col) pixel spacing in mm.

    Returns:
        The height in mm, or NaN if the disc is absent or too small to measure.
    """
    areas = mask.sum((1, 2))
    if areas.max(initial=0) < 3:
        return float("nan")
    rows, cols = np.nonzero(mask[int(np.argmax(areas))])
    points = np.stack([rows * spacing[0], cols * spacing[1]], axis=1)
    points = points - points.mean(0)
    major_std = float(np.sqrt(np.linalg.eigvalsh(np.cov(points.T))[-1]))
    length = np.sqrt(12.0) * major_std  # a uniform bar of length L has std L / sqrt(12)
    area = float(areas.max()) * spacing[0] * spacing[1]
    return float(area / max(length, 1e-6))
