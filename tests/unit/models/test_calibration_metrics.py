"""Calibration, chance-level retrieval and review-flag metrics on hand-built arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.metrics import flag_statistics, reliability_bins, retrieval_chance


def test_reliability_bins_and_ece_by_hand() -> None:
    probabilities = np.array([0.05, 0.05, 0.95, 0.95])
    truth = np.array([False, False, True, False])
    bins = reliability_bins(probabilities, truth)
    assert bins.count == (2, 0, 0, 0, 0, 0, 0, 0, 0, 2)
    assert bins.confidence[0] == pytest.approx(0.05) and bins.confidence[9] == pytest.approx(0.95)
    assert bins.frequency[0] == 0.0 and bins.frequency[9] == 0.5
    assert all(math.isnan(c) for c in bins.confidence[1:9])
    # (2 * |0 - 0.05| + 2 * |0.5 - 0.95|) / 4
    assert bins.expected_calibration_error == pytest.approx(0.25)


def test_calibrated_probabilities_have_zero_ece() -> None:
    probabilities = np.full((2, 2), 0.25)
    truth = np.array([[True, False], [False, False]])
    bins = reliability_bins(probabilities, truth)
    assert bins.count[2] == 4 and bins.expected_calibration_error == pytest.approx(0.0)


def test_bin_edges_are_left_closed_and_one_falls_in_the_last_bin() -> None:
    bins = reliability_bins(np.array([0.0, 0.1, 0.999, 1.0]), np.array([False, True, True, True]))
    assert bins.count == (1, 1, 0, 0, 0, 0, 0, 0, 0, 2)
    assert reliability_bins(np.array([0.2, 0.7]), np.array([True, False]), bins=2).count == (1, 1)


def test_no_predictions_give_empty_bins_and_nan_ece() -> None:
    bins = reliability_bins(np.zeros(0), np.zeros(0, dtype=bool))
    assert sum(bins.count) == 0 and math.isnan(bins.expected_calibration_error)


def test_reliability_bins_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        reliability_bins(np.zeros(3), np.zeros(2, dtype=bool))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        reliability_bins(np.array([1.5]), np.array([True]))
    with pytest.raises(ValueError, match="bins"):
        reliability_bins(np.zeros(1), np.zeros(1, dtype=bool), bins=0)


def test_retrieval_chance_is_k_over_candidates() -> None:
    assert retrieval_chance(4) == {"R@1": 0.25, "R@5": 1.0}
    assert retrieval_chance(10, (1, 5)) == {"R@1": 0.1, "R@5": 0.5}
    with pytest.raises(ValueError):
        retrieval_chance(0)


def test_flag_statistics_by_hand() -> None:
    flagged = np.array([True, True, False, False, True])
    failed = np.array([True, False, False, True, False])
    stats = flag_statistics(flagged, failed)
    assert stats["studies"] == 5 and stats["flagged"] == 3 and stats["flag_rate"] == 0.6
    assert stats["failed"] == 2 and stats["flagged_failed"] == 1 and stats["sensitivity"] == 0.5
    assert stats["passed"] == 3 and stats["flagged_passed"] == 2
    assert stats["false_alarm_rate"] == pytest.approx(2 / 3)
    none_failed = flag_statistics(np.array([False, True]), np.array([False, False]))
    assert math.isnan(none_failed["sensitivity"]) and none_failed["false_alarm_rate"] == 0.5
    with pytest.raises(ValueError):
        flag_statistics(np.zeros(2, dtype=bool), np.zeros(3, dtype=bool))
