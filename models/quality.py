"""How sure the model is of one study: a confidence per disc level and a study-level check.

Both read the segmentation the levels are named from, in model space: the softmax of the
network's logits, its raw argmax and the post-processed labels (levels named by counting; see
``models.postprocess.relabel_levels``).

- A level's **confidence** is the mean softmax probability of its disc class over the voxels the
  post-processing calls that disc. It is low where the network hesitates between structures, and
  where the count gave the disc a name the network did not (a level named wrongly, or cut by the
  field of view).
- The **study check** asks for review, with fixed reasons, when fewer than the five lumbar discs
  or no sacrum were found (coverage the level count cannot anchor on), when a lumbar disc's
  confidence or the mean certainty over the spine falls below what held-out phantoms of the
  training distribution reach, or when the network's own level names disagree with the count.
  The thresholds are set on validation phantoms (see the model card), so a flag means "unlike
  what the model was shown to handle", not a measured probability of error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

LUMBAR_DISCS = ("L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1")
"""The disc levels every lumbar study is expected to show."""
SACRUM = "S"

MIN_LEVEL_CONFIDENCE = 0.6
"""A lumbar disc below this confidence asks for review."""
MIN_SPINE_CERTAINTY = 0.85
"""Mean maximum softmax probability over the spine's voxels below this asks for review."""
MIN_NAMING_AGREEMENT = 0.9
"""Share of spine voxels whose raw network level matches the counted level, below which the
level names are called uncertain."""


@dataclass(frozen=True)
class QualityCheck:
    """The study-level verdict.

    Attributes:
        needs_review: whether the results should be read as "low confidence: review".
        reasons: why (fixed, patient-free texts); empty when no review is needed.
        lumbar_discs_found: how many of the five lumbar discs were found.
        sacrum_found: whether the sacrum was found.
        spine_certainty: mean maximum softmax probability over the spine's voxels.
        naming_agreement: share of spine voxels named alike by the network and the count.
    """

    needs_review: bool
    reasons: tuple[str, ...]
    lumbar_discs_found: int
    sacrum_found: bool
    spine_certainty: float
    naming_agreement: float


NOT_ASSESSED = QualityCheck(
    needs_review=True,
    reasons=("not assessed",),
    lumbar_discs_found=0,
    sacrum_found=False,
    spine_certainty=0.0,
    naming_agreement=0.0,
)
"""The verdict of a prediction made without the check: review."""


def level_confidences(
    probabilities: torch.Tensor, labels: torch.Tensor, discs: Mapping[str, int]
) -> dict[str, float]:
    """Confidence of each disc level present in ``labels``.

    Args:
        probabilities: (S, 1 + C, H, W) softmax of the segmentation logits.
        labels: (S, H, W) post-processed labels.
        discs: disc level name -> label value.

    Raises:
        Nothing.
    """
    confidences = {}
    for name, value in discs.items():
        mask = labels == value
        if bool(mask.any()):
            confidences[name] = float(probabilities[:, value][mask].float().mean())
    return confidences


def check_study(
    probabilities: torch.Tensor,
    raw: torch.Tensor,
    labels: torch.Tensor,
    spine_values: Sequence[int],
    confidences: Mapping[str, float],
    sacrum_value: int,
) -> QualityCheck:
    """The study-level check (see the module docstring).

    Args:
        probabilities: (S, 1 + C, H, W) softmax of the segmentation logits.
        raw: (S, H, W) argmax of the logits.
        labels: (S, H, W) post-processed labels.
        spine_values: label values of the vertebrae (sacrum included) and discs.
        confidences: :func:`level_confidences` of the study.
        sacrum_value: label value of the sacrum.

    Raises:
        Nothing.
    """
    values = torch.as_tensor(list(spine_values), device=labels.device)
    spine = torch.isin(labels, values)
    count = int(spine.sum())
    if count:
        certainty = float(probabilities.amax(1)[spine].float().mean())
        both = spine & torch.isin(raw, values)
        agreement = float((raw[both] == labels[both]).float().mean()) if bool(both.any()) else 0.0
    else:
        certainty = agreement = 0.0
    found = [d for d in LUMBAR_DISCS if d in confidences]
    sacrum = bool((labels == sacrum_value).any())
    reasons = []
    if len(found) < len(LUMBAR_DISCS):
        reasons.append(f"only {len(found)} of {len(LUMBAR_DISCS)} lumbar discs found")
    if not sacrum:
        reasons.append("sacrum not in view: levels named without it")
    doubtful = [d for d in found if confidences[d] < MIN_LEVEL_CONFIDENCE]
    if doubtful:
        listed = ", ".join(f"{d} ({confidences[d]:.2f})" for d in doubtful)
        reasons.append(f"low confidence at {listed}")
    if count and certainty < MIN_SPINE_CERTAINTY:
        reasons.append(f"low segmentation certainty ({certainty:.2f})")
    if count and agreement < MIN_NAMING_AGREEMENT:
        reasons.append(f"level names uncertain ({agreement:.2f} agreement)")
    return QualityCheck(
        needs_review=bool(reasons),
        reasons=tuple(reasons),
        lumbar_discs_found=len(found),
        sacrum_found=sacrum,
        spine_certainty=certainty,
        naming_agreement=agreement,
    )
