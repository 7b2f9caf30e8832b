"""Evaluation metrics: Dice, IoU, HD95, detection rates, thresholds, retrieval."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def dice_iou(prediction: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two boolean masks; both empty counts as a perfect (1, 1).

    Raises:
        ValueError: if the shapes differ.
    """
    if prediction.shape != target.shape:
        raise ValueError("shape mismatch")
    intersection = float(np.logical_and(prediction, target).sum())
    total = float(prediction.sum() + target.sum())
    if total == 0:
        return 1.0, 1.0
    return 2 * intersection / total, intersection / (total - intersection)


def hd95(prediction: np.ndarray, target: np.ndarray, spacing: tuple[float, ...]) -> float:
    """95th percentile symmetric surface distance in mm; NaN if either mask is empty.

    Raises:
        ValueError: if the shapes differ.
    """
    if prediction.shape != target.shape:
        raise ValueError("shape mismatch")
    if not prediction.any() or not target.any():
        return float("nan")
    surface_p = prediction & ~ndimage.binary_erosion(prediction)
    surface_t = target & ~ndimage.binary_erosion(target)
    to_t = ndimage.distance_transform_edt(~surface_t, sampling=spacing)
    to_p = ndimage.distance_transform_edt(~surface_p, sampling=spacing)
    distances = np.concatenate([to_t[surface_p], to_p[surface_t]])
    return float(np.percentile(distances, 95))


def detection_rates(calls: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Recall, precision and false-positive rate of boolean calls against truth.

    Raises:
        ValueError: if the shapes differ.
    """
    if calls.shape != truth.shape:
        raise ValueError("shape mismatch")
    tp = float((calls & truth).sum())
    fp = float((calls & ~truth).sum())
    fn = float((~calls & truth).sum())
    tn = float((~calls & ~truth).sum())
    return {
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "fpr": fp / (fp + tn) if fp + tn else float("nan"),
        "positives": tp + fn,
        "negatives": fp + tn,
    }


def threshold_for_fpr(scores: np.ndarray, truth: np.ndarray, target_fpr: float) -> float:
    """Lowest threshold whose false-positive rate on ``scores`` is at most ``target_fpr``.

    With no negatives the threshold is 0.5.

    Raises:
        ValueError: if ``target_fpr`` is outside [0, 1].
    """
    if not 0 <= target_fpr <= 1:
        raise ValueError("target_fpr must be in [0, 1]")
    negatives = np.sort(scores[~truth])[::-1]
    if negatives.size == 0:
        return 0.5
    allowed = int(np.floor(target_fpr * negatives.size))
    if allowed >= negatives.size:
        return float(negatives[-1])
    # calls are score >= threshold: put it just above the (allowed+1)-th highest negative
    return float(np.nextafter(negatives[allowed], np.inf))


def retrieval_recall(
    image: torch.Tensor, text: torch.Tensor, ks: tuple[int, ...] = (1, 5)
) -> dict[str, float]:
    """Image-to-text recall@k for paired, normalised embeddings (pair i is the match).

    Raises:
        ValueError: if the batch sizes differ.
    """
    if image.shape[0] != text.shape[0]:
        raise ValueError("batch size mismatch")
    similarity = image @ text.T
    ranks = (similarity > similarity.diag().unsqueeze(1)).sum(1)
    return {f"R@{k}": float((ranks < k).float().mean()) for k in ks}
