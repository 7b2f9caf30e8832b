"""Held-out evaluation: segmentation, abnormality calls, retrieval and zero-shot accuracy.

Everything goes through the :class:`~models.inference.Predictor` on raw volumes (input geometry),
except retrieval and zero-shot scores, which need the network's embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from models.data.phantom import phantom_to_sample
from models.data.samples import StudySample, findings_matrix
from models.inference import Predictor, StudyPrediction
from models.labels import LabelScheme, load_label_scheme
from models.metrics import detection_rates, dice_iou, hd95, retrieval_recall, threshold_for_fpr
from models.network import LumbarNet, StudyOutput
from models.phantom import generate_study
from models.text_encoder import TextEncoder
from models.training.cache import phantom_config
from models.volume import VolumeInput


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
    """

    structures: dict[str, dict[str, float]]
    miou: float
    mean_dice: float
    abnormalities: dict[str, dict[str, float]]
    retrieval: dict[str, float] = field(default_factory=dict)
    zero_shot_accuracy: float = float("nan")
    studies: int = 0


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


def level_scores(prediction: StudyPrediction, sample: StudySample) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) probabilities and truths for the sample's levels with known findings.

    Levels the model did not find score 0.

    Raises:
        Nothing.
    """
    scheme = load_label_scheme()
    keys = [a.key for a in scheme.abnormalities]
    truth, valid = findings_matrix(sample.findings, scheme)
    scores = np.zeros_like(truth)
    for i, disc in enumerate(scheme.discs):
        found = prediction.level_probabilities.get(disc.name)
        if found is not None:
            scores[i] = [found[k] for k in keys]
    return scores[valid], truth[valid].astype(bool)


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
    spine = scheme.spine_structures
    per_structure: dict[str, list[tuple[float, float, float]]] = {s.name: [] for s in spine}
    all_scores, all_truth = [], []
    embeddings = _EmbeddingMetrics(scheme)
    for sample in tqdm(samples, desc="evaluate", disable=not progress):
        if sample.labels is None:
            raise ValueError(f"{sample.study_id} has no labels")
        prediction, output = predictor.analyse(volumes_of(sample))
        embeddings.add(predictor.model, output, sample)
        spacing = (_slice_spacing(sample), *sample.pixel_spacing)
        for structure in spine:
            predicted = prediction.label_map == structure.value
            target = sample.labels == structure.value
            if not predicted.any() and not target.any():
                continue
            dice, iou = dice_iou(predicted, target)
            per_structure[structure.name].append((dice, iou, hd95(predicted, target, spacing)))
        scores, truth = level_scores(prediction, sample)
        all_scores.append(scores)
        all_truth.append(truth)
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
    scores = np.concatenate(all_scores)
    truth = np.concatenate(all_truth)
    keys = [a.key for a in scheme.abnormalities]
    thresholds = np.array([predictor.meta.thresholds.get(k, 0.5) for k in keys])
    calls = scores >= thresholds
    abnormalities = {k: detection_rates(calls[:, j], truth[:, j]) for j, k in enumerate(keys)}
    abnormalities["all"] = detection_rates(calls, truth)
    evaluation = Evaluation(
        structures=structures,
        miou=float(np.mean([v["iou"] for v in structures.values()])),
        mean_dice=float(np.mean([v["dice"] for v in structures.values()])),
        abnormalities=abnormalities,
        studies=len(samples),
        zero_shot_accuracy=embeddings.zero_shot_accuracy(),
    )
    reports = [s.report for s in samples]
    if text_encoder is not None and all(reports):
        raw = text_encoder.encode([r for r in reports if r]).to(predictor.device)
        evaluation.retrieval = embeddings.retrieval(predictor.model, raw)
    return evaluation


class _EmbeddingMetrics:
    """Zero-shot accuracy and image-to-report retrieval, accumulated study by study."""

    def __init__(self, scheme: LabelScheme) -> None:
        self.series: list[torch.Tensor] = []
        self.correct = 0
        self.total = 0
        self.scheme = scheme

    @torch.no_grad()
    def add(self, model: LumbarNet, output: StudyOutput, sample: StudySample) -> None:
        """Score one study's prompt-only level calls and keep its series embedding."""
        truth, known = findings_matrix(sample.findings, self.scheme)
        valid = torch.from_numpy(known) & output.level_valid.cpu()
        guess = (output.zero_shot.cpu() > 0)[valid]
        self.correct += int((guess == torch.from_numpy(truth)[valid].bool()).sum())
        self.total += guess.numel()
        self.series.append(model.encode_series(output).cpu())

    def zero_shot_accuracy(self) -> float:
        """Share of known (level, abnormality) pairs the prompt-only scores got right."""
        return self.correct / self.total if self.total else float("nan")

    @torch.no_grad()
    def retrieval(self, model: LumbarNet, raw_reports: torch.Tensor) -> dict[str, float]:
        """R@1 / R@5 of each study's report among all of them (studies in ``add`` order)."""
        reports = model.encode_report(raw_reports).cpu()
        return retrieval_recall(torch.stack(self.series), reports)


def format_comparison(results: dict[str, Evaluation]) -> str:
    """Side-by-side text table of several evaluations (e.g. text-guided vs visual-only).

    Raises:
        ValueError: if ``results`` is empty.
    """
    if not results:
        raise ValueError("nothing to format")
    names = list(results)
    width = max(14, *(len(n) + 2 for n in names))
    lines = ["metric".ljust(24) + "".join(n.rjust(width) for n in names)]

    def row(label: str, values: list[float], fmt: str = "{:.3f}") -> None:
        lines.append(label.ljust(24) + "".join(fmt.format(v).rjust(width) for v in values))

    first = results[names[0]]
    row("studies", [r.studies for r in results.values()], "{:.0f}")
    row("mIoU (19 structures)", [r.miou for r in results.values()])
    row("mean Dice (19)", [r.mean_dice for r in results.values()])
    for name in first.structures:
        row(
            f"  Dice {name}",
            [r.structures.get(name, {}).get("dice", np.nan) for r in results.values()],
        )
        row(
            f"  IoU {name}",
            [r.structures.get(name, {}).get("iou", np.nan) for r in results.values()],
        )
        row(
            f"  HD95 mm {name}",
            [r.structures.get(name, {}).get("hd95", np.nan) for r in results.values()],
        )
    for key in first.abnormalities:
        for metric in ("recall", "precision", "fpr"):
            row(f"{key} {metric}", [r.abnormalities[key][metric] for r in results.values()])
    for metric in ("R@1", "R@5"):
        row(f"retrieval {metric}", [r.retrieval.get(metric, np.nan) for r in results.values()])
    row("zero-shot accuracy", [r.zero_shot_accuracy for r in results.values()])
    return "\n".join(lines)


def _slice_spacing(sample: StudySample) -> float:
    positions = np.asarray(sample.slice_positions_mm, dtype=float)
    return float(np.median(np.abs(np.diff(positions)))) if positions.size > 1 else 1.0
