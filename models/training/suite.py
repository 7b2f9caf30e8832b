"""The robustness suite: every shift of a suite (see :data:`models.robustness.SUITES`) evaluated
for several checkpoints on the same held-out seeds, and the release targets checked on each."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from models.inference import Predictor
from models.robustness import SUITES
from models.text_encoder import TextEncoder
from models.training.evaluate import LUMBAR_STRUCTURES, Evaluation, evaluate, phantom_samples


@dataclass(frozen=True)
class Targets:
    """What a release must reach on every shift.

    Attributes:
        miou: minimum mIoU over the 19 spine structures.
        lumbar_iou: minimum IoU of each of :data:`~models.training.evaluate.LUMBAR_STRUCTURES`.
        recall: minimum recall of each abnormality class.
        fpr: maximum false-positive rate of each abnormality class.
    """

    miou: float = 0.90
    lumbar_iou: float = 0.92
    recall: float = 0.90
    fpr: float = 0.05


@dataclass(frozen=True)
class Miss:
    """A metric on the wrong side of its target; ``margin`` = value - target (signed)."""

    metric: str
    value: float
    target: float

    @property
    def margin(self) -> float:
        """How far the value is from the target (negative below, positive above)."""
        return self.value - self.target


def suite_plan(name: str, seeds: range | None = None) -> tuple[tuple[str, ...], range]:
    """The shifts of suite ``name`` and its held-out seeds (``seeds`` overrides them).

    Raises:
        ValueError: on an unknown suite.
    """
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    shifts, (start, stop) = SUITES[name]
    return shifts, seeds if seeds is not None else range(start, stop)


def run_suite(
    predictors: Mapping[str, Predictor],
    shifts: Sequence[str],
    seeds: range,
    text_encoder: TextEncoder | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Evaluation]]:
    """Shift -> checkpoint name -> its evaluation, every checkpoint on the same studies.

    Raises:
        ValueError: on an unknown shift or an empty seed range.
    """
    results = {}
    for shift in shifts:
        samples = list(phantom_samples(seeds, shift))
        results[shift] = {
            name: evaluate(predictor, samples, text_encoder, progress)
            for name, predictor in predictors.items()
        }
    return results


def target_misses(evaluation: Evaluation, targets: Targets = Targets()) -> list[Miss]:
    """The targets ``evaluation`` misses; unmeasured metrics (NaN, absent structures) are skipped.

    Raises:
        Nothing.
    """
    checks = [("mIoU", evaluation.miou, targets.miou, False)]
    checks += [
        (f"{name} IoU", evaluation.structures[name]["iou"], targets.lumbar_iou, False)
        for name in LUMBAR_STRUCTURES
        if name in evaluation.structures
    ]
    for key, rates in evaluation.abnormalities.items():
        if key != "all":
            checks.append((f"{key} recall", rates["recall"], targets.recall, False))
            checks.append((f"{key} FPR", rates["fpr"], targets.fpr, True))
    return [
        Miss(metric, value, target)
        for metric, value, target, at_most in checks
        if not math.isnan(value) and (value > target if at_most else value < target)
    ]
