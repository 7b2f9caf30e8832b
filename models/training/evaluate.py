"""Held-out evaluation: segmentation, abnormality calls and their calibration, review flags,
retrieval and zero-shot accuracy, each beside its trivial baseline where it has one.

Everything goes through the :class:`~models.inference.Predictor` on raw volumes (input geometry),
except retrieval and zero-shot scores, which need the network's embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from models.data.phantom import phantom_to_sample
from models.data.samples import StudySample, findings_matrix
from models.inference import Predictor, StudyPrediction
from models.labels import LabelScheme, load_label_scheme
from models.metrics import (
    ReliabilityBins,
    detection_rates,
    dice_iou,
    flag_statistics,
    hd95,
    reliability_bins,
    retrieval_chance,
    retrieval_recall,
    threshold_for_fpr,
)
from models.network import LumbarNet, StudyOutput
from models.phantom import generate_study
from models.quality import LUMBAR_DISCS, SACRUM
from models.text_encoder import TextEncoder
from models.training.cache import phantom_config
from models.volume import VolumeInput

#: Lumbar vertebrae (the sacrum included) and discs, the structures the lumbar metrics cover.
LUMBAR_VERTEBRAE = ("L1", "L2", "L3", "L4", "L5", SACRUM)
LUMBAR_STRUCTURES = LUMBAR_VERTEBRAE + LUMBAR_DISCS

#: A study failed when its mIoU is below FAILED_MIOU or a lumbar vertebra's IoU is below
#: MISNAMED_IOU (the level is named wrong).
FAILED_MIOU = 0.85
MISNAMED_IOU = 0.5

CALIBRATION_BINS = 10


@dataclass
class Evaluation:
    """Metrics of one checkpoint on one held-out set.

    Attributes:
        structures: structure name -> {"dice", "iou", "hd95"} means over studies.
        miou: mean IoU over the 19 spine structures.
        mean_dice: mean Dice over the 19 spine structures.
        abnormalities: key -> {"recall", "precision", "fpr", ...}; "all" = pooled.
        retrieval: {"R@1", "R@5"} image-to-report, or empty without a text encoder.
        zero_shot_accuracy: accuracy of prompt-only abnormality scores (> 0 = present).
        studies: number of studies.
        lumbar_miou: mean IoU over :data:`LUMBAR_STRUCTURES`.
        calibration_error: key -> expected calibration error of the level probabilities over
            the known levels the model found; "all" = pooled.
        reliability: key -> the reliability bins behind ``calibration_error``.
        all_absent_accuracy: accuracy of calling every abnormality absent, on the pairs
            ``zero_shot_accuracy`` is measured on.
        retrieval_chance: {"R@1", "R@5"} of a random ranking, beside ``retrieval``.
        quality: review-flag statistics (see :func:`models.metrics.flag_statistics`).
        per_study: one record per study: ``study_id``, ``miou``, ``iou`` (structure -> IoU),
            ``failed``, ``needs_review`` and ``reasons``.
    """

    structures: dict[str, dict[str, float]]
    miou: float
    mean_dice: float
    abnormalities: dict[str, dict[str, float]]
    retrieval: dict[str, float] = field(default_factory=dict)
    zero_shot_accuracy: float = float("nan")
    studies: int = 0
    lumbar_miou: float = float("nan")
    calibration_error: dict[str, float] = field(default_factory=dict)
    reliability: dict[str, ReliabilityBins] = field(default_factory=dict)
    all_absent_accuracy: float = float("nan")
    retrieval_chance: dict[str, float] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)
    per_study: list[dict[str, Any]] = field(default_factory=list)


def phantom_samples(seeds: Iterable[int], size: str) -> Iterator[StudySample]:
    """Generate phantom studies for ``seeds`` as samples (never cached: held-out data).

    Raises:
        ValueError: on an unknown size.
    """
    config = phantom_config(size)
    for seed in seeds:
        yield phantom_to_sample(generate_study(seed, config))


def volumes_of(sample: StudySample) -> dict[str, VolumeInput]:
    """The predictor's input for a sample (SAG_T2, plus SAG_T1 when present).

    Raises:
        Nothing.
    """
    volumes = {
        "SAG_T2": VolumeInput(
            sample.t2, sample.pixel_spacing, sample.slice_positions_mm, sample.orientation
        )
    }
    if sample.t1 is not None:
        volumes["SAG_T1"] = VolumeInput(
            sample.t1, sample.pixel_spacing, sample.slice_positions_mm, sample.orientation
        )
    return volumes


def level_scores(
    prediction: StudyPrediction, sample: StudySample
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, K) probabilities and truths for the sample's levels with known findings, and (N,)
    whether the model found each of those levels.

    Levels the model did not find score 0.

    Raises:
        Nothing.
    """
    scheme = load_label_scheme()
    keys = [a.key for a in scheme.abnormalities]
    truth, valid = findings_matrix(sample.findings, scheme)
    scores = np.zeros_like(truth)
    found = np.zeros(len(scheme.discs), dtype=bool)
    for i, disc in enumerate(scheme.discs):
        probabilities = prediction.level_probabilities.get(disc.name)
        if probabilities is not None:
            scores[i] = [probabilities[k] for k in keys]
            found[i] = True
    return scores[valid], truth[valid].astype(bool), found[valid]


def tune_thresholds(
    predictor: Predictor, samples: list[StudySample], target_fpr: float
) -> dict[str, float]:
    """Per-class thresholds reaching ``target_fpr`` on validation samples.

    Raises:
        ValueError: if there are no samples.
    """
    if not samples:
        raise ValueError("no validation samples")
    pairs = [level_scores(predictor.predict(volumes_of(s)), s) for s in samples]
    scores = np.concatenate([p[0] for p in pairs])
    truth = np.concatenate([p[1] for p in pairs])
    keys = [a.key for a in load_label_scheme().abnormalities]
    return {k: threshold_for_fpr(scores[:, j], truth[:, j], target_fpr) for j, k in enumerate(keys)}


def evaluate(
    predictor: Predictor,
    samples: list[StudySample],
    text_encoder: TextEncoder | None = None,
    progress: bool = True,
) -> Evaluation:
    """Evaluate a predictor on labelled samples.

    Raises:
        ValueError: if there are no samples or one has no labels.
    """
    if not samples:
        raise ValueError("no samples")
    scheme = load_label_scheme()
    per_structure: dict[str, list[tuple[float, float, float]]] = {
        s.name: [] for s in scheme.spine_structures
    }
    levels: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    per_study: list[dict[str, Any]] = []
    embeddings = _EmbeddingMetrics(scheme)
    for sample in tqdm(samples, desc="evaluate", disable=not progress):
        if sample.labels is None:
            raise ValueError(f"{sample.study_id} has no labels")
        prediction, output = predictor.analyse(volumes_of(sample))
        embeddings.add(predictor.model, output, sample)
        overlaps = structure_overlaps(prediction.label_map, sample, scheme)
        for name, values in overlaps.items():
            per_structure[name].append(values)
        per_study.append(study_record(sample.study_id, overlaps, prediction))
        levels.append(level_scores(prediction, sample))
    structures = {
        name: {
            "dice": float(np.mean([v[0] for v in values])),
            "iou": float(np.mean([v[1] for v in values])),
            "hd95": float(np.nanmean([v[2] for v in values]))
            if any(np.isfinite(v[2]) for v in values)
            else float("nan"),
        }
        for name, values in per_structure.items()
        if values
    }
    scores, truth, found = (np.concatenate(arrays) for arrays in zip(*levels, strict=True))
    keys = [a.key for a in scheme.abnormalities]
    thresholds = np.array([predictor.meta.thresholds.get(k, 0.5) for k in keys])
    calls = scores >= thresholds
    abnormalities = {k: detection_rates(calls[:, j], truth[:, j]) for j, k in enumerate(keys)}
    abnormalities["all"] = detection_rates(calls, truth)
    reliability = {
        k: reliability_bins(scores[found, j], truth[found, j], CALIBRATION_BINS)
        for j, k in enumerate(keys)
    }
    reliability["all"] = reliability_bins(scores[found], truth[found], CALIBRATION_BINS)
    lumbar = [structures[n]["iou"] for n in LUMBAR_STRUCTURES if n in structures]
    evaluation = Evaluation(
        structures=structures,
        miou=float(np.mean([v["iou"] for v in structures.values()])),
        mean_dice=float(np.mean([v["dice"] for v in structures.values()])),
        abnormalities=abnormalities,
        studies=len(samples),
        zero_shot_accuracy=embeddings.zero_shot_accuracy(),
        lumbar_miou=float(np.mean(lumbar)) if lumbar else float("nan"),
        calibration_error={k: b.expected_calibration_error for k, b in reliability.items()},
        reliability=reliability,
        all_absent_accuracy=embeddings.all_absent_accuracy(),
        quality=flag_statistics(
            np.array([r["needs_review"] for r in per_study]),
            np.array([r["failed"] for r in per_study]),
        ),
        per_study=per_study,
    )
    reports = [s.report for s in samples]
    if text_encoder is not None and all(reports):
        raw = text_encoder.encode([r for r in reports if r]).to(predictor.device)
        evaluation.retrieval = embeddings.retrieval(predictor.model, raw)
        evaluation.retrieval_chance = retrieval_chance(len(samples))
    return evaluation


def structure_overlaps(
    label_map: np.ndarray, sample: StudySample, scheme: LabelScheme
) -> dict[str, tuple[float, float, float]]:
    """Spine structure name -> (Dice, IoU, HD95 mm) of a predicted label map against the
    sample's labels; structures absent from both are left out.

    Raises:
        ValueError: if the sample has no labels or their shape differs from the label map's.
    """
    if sample.labels is None:
        raise ValueError(f"{sample.study_id} has no labels")
    spacing = (_slice_spacing(sample), *sample.pixel_spacing)
    overlaps = {}
    for structure in scheme.spine_structures:
        predicted = label_map == structure.value
        target = sample.labels == structure.value
        if predicted.any() or target.any():
            dice, iou = dice_iou(predicted, target)
            overlaps[structure.name] = (dice, iou, hd95(predicted, target, spacing))
    return overlaps


def study_record(
    study_id: str, overlaps: dict[str, tuple[float, float, float]], prediction: StudyPrediction
) -> dict[str, Any]:
    """One study's entry of :attr:`Evaluation.per_study`: its IoUs, whether it failed (see
    :data:`FAILED_MIOU`) and whether the model's quality check flagged it for review.

    Raises:
        Nothing.
    """
    iou = {name: values[1] for name, values in overlaps.items()}
    miou = float(np.mean(list(iou.values()))) if iou else float("nan")
    misnamed = any(iou[name] < MISNAMED_IOU for name in LUMBAR_VERTEBRAE if name in iou)
    return {
        "study_id": study_id,
        "miou": miou,
        "iou": iou,
        "failed": bool(miou < FAILED_MIOU or misnamed),
        "needs_review": bool(prediction.quality.needs_review),
        "reasons": list(prediction.quality.reasons),
    }


class _EmbeddingMetrics:
    """Zero-shot accuracy and image-to-report retrieval, accumulated study by study."""

    def __init__(self, scheme: LabelScheme) -> None:
        self.series: list[torch.Tensor] = []
        self.correct = 0
        self.negatives = 0
        self.total = 0
        self.scheme = scheme

    @torch.no_grad()
    def add(self, model: LumbarNet, output: StudyOutput, sample: StudySample) -> None:
        """Score one study's prompt-only level calls and keep its series embedding."""
        truth, known = findings_matrix(sample.findings, self.scheme)
        valid = torch.from_numpy(known) & output.level_valid.cpu()
        guess = (output.zero_shot.cpu() > 0)[valid]
        present = torch.from_numpy(truth)[valid].bool()
        self.correct += int((guess == present).sum())
        self.negatives += int((~present).sum())
        self.total += guess.numel()
        self.series.append(model.encode_series(output).cpu())

    def zero_shot_accuracy(self) -> float:
        """Share of known (level, abnormality) pairs the prompt-only scores got right."""
        return self.correct / self.total if self.total else float("nan")

    def all_absent_accuracy(self) -> float:
        """Share of negatives among the pairs of :meth:`zero_shot_accuracy`."""
        return self.negatives / self.total if self.total else float("nan")

    @torch.no_grad()
    def retrieval(self, model: LumbarNet, raw_reports: torch.Tensor) -> dict[str, float]:
        """R@1 / R@5 of each study's report among all of them (studies in ``add`` order)."""
        reports = model.encode_report(raw_reports).cpu()
        return retrieval_recall(torch.stack(self.series), reports)


def _slice_spacing(sample: StudySample) -> float:
    positions = np.asarray(sample.slice_positions_mm, dtype=float)
    return float(np.median(np.abs(np.diff(positions)))) if positions.size > 1 else 1.0
