"""Evaluation metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.metrics import detection_rates, dice_iou, hd95, retrieval_recall, threshold_for_fpr


def test_dice_iou_by_hand() -> None:
    a = np.zeros((4, 4), dtype=bool)
    b = np.zeros((4, 4), dtype=bool)
    a[:2] = True  # 8 px
    b[1:3] = True  # 8 px, 4 shared
    dice, iou = dice_iou(a, b)
    assert dice == pytest.approx(0.5) and iou == pytest.approx(1 / 3)
    assert dice_iou(np.zeros(3, bool), np.zeros(3, bool)) == (1.0, 1.0)


def test_hd95_of_shifted_cube() -> None:
    a = np.zeros((1, 20, 20), dtype=bool)
    a[0, 5:10, 5:10] = True
    b = np.roll(a, 3, axis=2)
    assert hd95(a, b, (1.0, 1.0, 2.0)) == pytest.approx(6.0)
    assert np.isnan(hd95(a, np.zeros_like(a), (1.0, 1.0, 1.0)))


def test_detection_rates_and_thresholds() -> None:
    truth = np.array([True, True, False, False, False, False])
    scores = np.array([0.9, 0.4, 0.8, 0.3, 0.2, 0.1])
    rates = detection_rates(scores >= 0.35, truth)
    assert rates["recall"] == 1.0 and rates["fpr"] == 0.25 and rates["precision"] == 2 / 3
    threshold = threshold_for_fpr(scores, truth, 0.0)
    assert threshold > 0.8 and detection_rates(scores >= threshold, truth)["fpr"] == 0.0
    threshold = threshold_for_fpr(scores, truth, 0.25)
    assert detection_rates(scores >= threshold, truth)["fpr"] <= 0.25
    assert 0.3 < threshold <= 0.8


def test_retrieval_recall() -> None:
    image = torch.eye(3)
    text = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    result = retrieval_recall(image, text, ks=(1, 2))
    assert result["R@1"] == pytest.approx(1 / 3) and result["R@2"] == pytest.approx(1.0)
