"""Evaluation metrics: Dice, IoU, HD95, detection rates, thresholds, retrieval, calibration and
review flags."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width bins of predicted probability, ``[i/n, (i+1)/n)`` (the last one closed).

    Attributes:
        count: predictions in each bin.
        confidence: mean predicted probability per bin (NaN when empty).
        frequency: share of positives per bin (NaN when empty).
    """

    count: tuple[int, ...]
    confidence: tuple[float, ...]
    frequency: tuple[float, ...]

    @property
    def expected_calibration_error(self) -> float:
        """Count-weighted mean of |frequency - confidence| over the bins; NaN when empty."""
        count = np.asarray(self.count, dtype=float)
        if count.sum() == 0:
            return float("nan")
        gap = np.abs(np.asarray(self.frequency) - np.asarray(self.confidence))
        return float(np.sum(count[count > 0] * gap[count > 0]) / count.sum())


def reliability_bins(
    probabilities: np.ndarray, truth: np.ndarray, bins: int = 10
) -> ReliabilityBins:
    """Reliability bins of binary probabilities against boolean truth (any shape, flattened).

    Raises:
        ValueError: if the shapes differ, ``bins`` < 1 or a probability is outside [0, 1].
    """
    if probabilities.shape != truth.shape:
        raise ValueError("shape mismatch")
    if bins < 1:
        raise ValueError("bins must be at least 1")
    p = probabilities.astype(float).ravel()
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError("probabilities must be in [0, 1]")
    index = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(index, weights=p, minlength=bins) / count
        frequency = np.bincount(index, weights=truth.ravel().astype(float), minlength=bins) / count
    return ReliabilityBins(
        count=tuple(int(c) for c in count),
        confidence=tuple(float(c) for c in confidence),
        frequency=tuple(float(f) for f in frequency),
    )


def retrieval_chance(candidates: int, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Recall@k of a random ranking among ``candidates`` (k / candidates, at most 1).

    Raises:
        ValueError: if there are no candidates.
    """
    if candidates < 1:
        raise ValueError("no candidates")
    return {f"R@{k}": min(k, candidates) / candidates for k in ks}


def flag_statistics(flagged: np.ndarray, failed: np.ndarray) -> dict[str, float]:
    """How well review flags pick out failed studies (boolean arrays, one entry per study).

    Returns counts (``studies``, ``flagged``, ``failed``, ``flagged_failed``, ``passed``,
    ``flagged_passed``) and rates: ``flag_rate`` (flagged share), ``sensitivity`` (flagged share
    of the failed) and ``false_alarm_rate`` (flagged share of the others); NaN when undefined.

    Raises:
        ValueError: if the shapes differ.
    """
    if flagged.shape != failed.shape:
        raise ValueError("shape mismatch")
    flagged, failed = flagged.astype(bool), failed.astype(bool)
    counts = {
        "studies": float(flagged.size),
        "flagged": float(flagged.sum()),
        "failed": float(failed.sum()),
        "flagged_failed": float((flagged & failed).sum()),
        "passed": float((~failed).sum()),
        "flagged_passed": float((flagged & ~failed).sum()),
    }

    def share(part: float, whole: float) -> float:
        return part / whole if whole else float("nan")

    return {
        **counts,
        "flag_rate": share(counts["flagged"], counts["studies"]),
        "sensitivity": share(counts["flagged_failed"], counts["failed"]),
        "false_alarm_rate": share(counts["flagged_passed"], counts["passed"]),
    }
