"""The per-level confidence and the study check."""

from __future__ import annotations

import torch

from models.quality import LUMBAR_DISCS, check_study, level_confidences

# label values in a toy scheme: 1 sacrum, 2..6 lumbar discs, 7 a vertebra
DISCS = {name: 2 + i for i, name in enumerate(LUMBAR_DISCS)}
SPINE = [1, 7, *DISCS.values()]


def _study(sure: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities (1, 8, 6, 6) with every class present and ``sure`` on the true class."""
    labels = torch.tensor([[0, 1, 2, 3, 4, 5], [6, 7, 7, 1, 2, 3]] * 3).view(1, 6, 6)
    probabilities = torch.full((1, 8, 6, 6), (1 - sure) / 7)
    probabilities.scatter_(1, labels[:, None], sure)
    return probabilities, labels


def test_a_sure_complete_study_passes() -> None:
    probabilities, labels = _study(0.97)
    confidences = level_confidences(probabilities, labels, DISCS)
    assert set(confidences) == set(LUMBAR_DISCS)
    assert all(abs(c - 0.97) < 1e-6 for c in confidences.values())
    check = check_study(probabilities, labels, labels, SPINE, confidences, 1)
    assert not check.needs_review and check.reasons == ()
    assert check.lumbar_discs_found == 5 and check.sacrum_found
    assert abs(check.naming_agreement - 1.0) < 1e-6


def test_missing_levels_and_sacrum_ask_for_review() -> None:
    probabilities, labels = _study(0.97)
    labels = labels.clone()
    labels[labels == 1] = 0  # no sacrum
    labels[labels == DISCS["L1/L2"]] = 0
    confidences = level_confidences(probabilities, labels, DISCS)
    check = check_study(probabilities, labels, labels, SPINE, confidences, 1)
    assert check.needs_review
    assert check.reasons[:2] == (
        "only 4 of 5 lumbar discs found",
        "sacrum not in view: levels named without it",
    )


def test_doubt_and_disagreement_ask_for_review() -> None:
    probabilities, labels = _study(0.4)
    raw = labels.clone()
    raw[labels == DISCS["L4/L5"]] = DISCS["L3/L4"]  # the network names two levels differently
    raw[labels == DISCS["L2/L3"]] = DISCS["L1/L2"]
    confidences = level_confidences(probabilities, labels, DISCS)
    check = check_study(probabilities, raw, labels, SPINE, confidences, 1)
    assert check.needs_review
    assert any(r.startswith("low confidence at L1/L2 (0.40)") for r in check.reasons)
    assert "low segmentation certainty (0.40)" in check.reasons
    assert any(r.startswith("level names uncertain") for r in check.reasons)
