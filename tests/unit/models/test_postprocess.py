"""Post-processing: connected components, cranio-caudal order, disc height."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.postprocess import (
    disc_height_mm,
    enforce_level_order,
    largest_components,
    superior_coordinate,
)

SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # rows run head -> feet


def test_largest_component_drops_islands() -> None:
    labels = np.zeros((1, 10, 10), dtype=np.uint8)
    labels[0, 1:5, 1:5] = 3
    labels[0, 8, 8] = 3
    out = largest_components(labels, [3])
    assert out[0, 8, 8] == 0 and (out == 3).sum() == 16


def test_superior_coordinate_follows_orientation() -> None:
    superior = superior_coordinate((3, 2), SAGITTAL, (2.0, 1.0))
    assert superior[0, 0] == 0 and superior[2, 0] == -4.0
    flipped = superior_coordinate((3, 2), (0.0, 1.0, 0.0, 0.0, 0.0, 1.0), (2.0, 1.0))
    assert flipped[2, 0] == 4.0
    with pytest.raises(ValueError):
        superior_coordinate((3, 2), (1.0, 0.0), (1.0, 1.0))


def test_level_order_fixes_a_swap() -> None:
    labels = np.zeros((1, 12, 4), dtype=np.uint8)
    labels[0, 0:2] = 4  # L3 predicted at the top
    labels[0, 4:6] = 5  # L2 predicted below it: swapped
    labels[0, 8:10] = 2  # L5 correct (L4 missing)
    order = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]  # T9 .. S, cranial first
    superior = superior_coordinate((12, 4), SAGITTAL, (1.0, 1.0))
    out = enforce_level_order(labels, order, superior)
    assert (out[0, 0:2] == 5).all() and (out[0, 4:6] == 4).all() and (out[0, 8:10] == 2).all()
    assert np.array_equal(enforce_level_order(out, order, superior), out)


def test_disc_height_of_a_bar() -> None:
    mask = np.zeros((3, 40, 60), dtype=bool)
    mask[1, 20:24, 10:50] = True  # 4 rows x 40 cols at 0.5 mm -> 2 mm high, 20 mm long
    assert disc_height_mm(mask, (0.5, 0.5)) == pytest.approx(2.0, rel=0.05)
    assert math.isnan(disc_height_mm(np.zeros((1, 5, 5), dtype=bool), (1.0, 1.0)))
