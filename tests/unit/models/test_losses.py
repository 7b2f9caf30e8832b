"""Loss tests against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from models.losses import (
    ClipLoss,
    SoftClipLoss,
    abnormality_loss,
    label_similarity,
    masked_reconstruction_loss,
    segmentation_loss,
)


def test_clip_loss_two_pairs_by_hand() -> None:
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    scale = torch.tensor(2.0)
    # logits = 2 * image @ text.T = [[2, 1.2], [0, 1.6]]
    row0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(1.2)))
    row1 = -math.log(math.exp(1.6) / (math.exp(0) + math.exp(1.6)))
    col0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(0)))
    col1 = -math.log(math.exp(1.6) / (math.exp(1.2) + math.exp(1.6)))
    expected = ((row0 + row1) / 2 + (col0 + col1) / 2) / 2
    assert ClipLoss()(image, text, scale).item() == pytest.approx(expected, rel=1e-6)


def test_soft_clip_targets_by_hand() -> None:
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    findings = torch.tensor([[1, 0], [1, 0]])
    loss = SoftClipLoss(intra_weight=0.5, label_weight=0.5, target_temperature=1.0)
    targets = loss.soft_targets(image, text, findings)
    # similarity = 0.5 * I + 0.5 * ones (identical findings) -> rows [1, .5] and [.5, 1]
    p = math.exp(1.0) / (math.exp(1.0) + math.exp(0.5))
    assert torch.allclose(targets, torch.tensor([[p, 1 - p], [1 - p, p]]), atol=1e-6)
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # scale 1
    q = math.exp(1) / (math.exp(1) + 1)
    row = -(p * math.log(q) + (1 - p) * math.log(1 - q))
    assert loss(image, text, torch.tensor(1.0), findings).item() == pytest.approx(row, rel=1e-6)
    assert torch.equal(logits, image @ text.T)


def test_soft_clip_with_identical_reports_beats_hard_clip() -> None:
    image = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [1.0, -0.1]]), dim=-1)
    text = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # two identical templated reports
    findings = torch.tensor([[0, 0], [0, 0]])
    scale = torch.tensor(10.0)
    assert SoftClipLoss()(image, text, scale, findings) < ClipLoss()(image, text, scale)


def test_label_similarity_jaccard() -> None:
    findings = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]])
    sim = label_similarity(findings)
    assert sim[0, 1].item() == pytest.approx(0.5)
    assert sim[2, 3].item() == pytest.approx(1.0)
    assert sim[0, 2].item() == pytest.approx(0.0)


def test_segmentation_loss_batch_dice_over_present_classes_by_hand() -> None:
    logits = torch.zeros(2, 4, 2, 2)  # class 3 is in no target: no Dice term
    target = torch.tensor([[[0, 1], [2, 2]], [[0, 0], [0, 1]]])
    # CE = log 4 everywhere. Each class gets 1/4 of the 8 pixels; class 1 has 2 px, class 2 has 2.
    d1 = 2 * (2 / 4) / (8 / 4 + 2)
    d2 = 2 * (2 / 4) / (8 / 4 + 2)
    expected = math.log(4) + ((1 - d1) + (1 - d2)) / 2
    assert segmentation_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    background_only = torch.zeros(1, 2, 2, dtype=torch.long)
    assert segmentation_loss(logits[:1], background_only).item() == pytest.approx(math.log(4))
    # where class 2 is not annotated in the first sample, its pixels there leave its Dice out
    annotated = torch.tensor([[True, True, False, True], [True, True, True, True]])
    partial = segmentation_loss(logits, target, annotated) - segmentation_loss(
        logits, target, annotated, dice_weight=0.0
    )
    assert partial.item() == pytest.approx(1 - d1, rel=1e-6)


def test_segmentation_loss_partial_labels_merge_unannotated_into_background() -> None:
    logits = torch.tensor([[[[0.0]], [[3.0]], [[0.0]]]])  # one pixel, predicts class 1
    target = torch.tensor([[[0]]])  # labelled background, but class 1 is not annotated
    annotated = torch.tensor([[True, False, True]])
    loss = segmentation_loss(logits, target, annotated, dice_weight=0.0)
    probs = torch.softmax(logits[0, :, 0, 0], 0)
    assert loss.item() == pytest.approx(-math.log(probs[0] + probs[1]), rel=1e-6)
    full = segmentation_loss(logits, target, dice_weight=0.0)
    assert full.item() == pytest.approx(-math.log(probs[0]), rel=1e-6)


def test_abnormality_loss_pos_weight_by_hand() -> None:
    logits = torch.tensor([[0.0, 0.0], [5.0, 5.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    valid = torch.tensor([True, False])
    loss = abnormality_loss(logits, targets, valid, torch.tensor([3.0, 1.0]))
    assert loss.item() == pytest.approx((3 * math.log(2) + math.log(2)) / 2, rel=1e-6)
    none = abnormality_loss(logits, targets, torch.tensor([False, False]), torch.ones(2))
    assert none.item() == 0.0


def test_masked_reconstruction_only_counts_masked_pixels() -> None:
    image = torch.zeros(1, 2, 2, 2)
    prediction = torch.ones(1, 2, 2, 2)
    prediction[0, :, 1, 1] = 3.0
    mask = torch.zeros(1, 1, 2, 2)
    mask[0, 0, 1, 1] = 1.0
    assert masked_reconstruction_loss(prediction, image, mask).item() == pytest.approx(9.0)
