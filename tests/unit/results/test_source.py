"""Locating structures in a label map: the same answer as a full scan, for any integer type."""

from __future__ import annotations

import numpy as np
import pytest

from pacs_node.results.source import present_structures, structure_rows

VALUES = {"S": 1, "L5": 2, "L4/L5": 12, "canal": 20, "absent": 7}


def _label_map(dtype: type, seed: int) -> np.ndarray:
    """Blocks of structures, a few stray voxels, and values that are not structures (background)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((6, 40, 24), dtype=dtype)
    labels[1:4, 5:12, 3:9] = 1
    labels[2:5, 10:30, 6:8] = 20
    labels[0, 39, 23] = 12
    labels[5, 0, 0] = 2
    noise = rng.random(labels.shape) < 0.02
    labels[noise] = rng.choice([1, 2, 12, 20, 5, 200], size=int(noise.sum()))
    if np.issubdtype(dtype, np.signedinteger):
        labels[3, 20:25, 10:20] = -4
    return labels


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64])
@pytest.mark.parametrize("seed", [0, 1])
def test_structure_rows_match_a_full_scan(dtype: type, seed: int) -> None:
    labels = _label_map(dtype, seed)
    located = structure_rows(labels, VALUES)

    expected = {
        (index, value)
        for value in VALUES.values()
        for index in range(labels.shape[0])
        if (labels[index] == value).any()
    }
    assert [(r.index, r.value) for r in located] == sorted(expected, key=lambda p: (p[1], p[0]))
    for rows in located:
        holding = np.flatnonzero((labels[rows.index] == rows.value).any(axis=1))
        assert rows.top <= holding[0] and holding[-1] < rows.bottom


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64])
def test_present_structures_match_unique(dtype: type) -> None:
    labels = _label_map(dtype, 2)
    present = set(np.unique(labels).tolist())
    expected = sorted(((n, v) for n, v in VALUES.items() if v in present), key=lambda p: p[1])
    assert present_structures(labels, VALUES) == expected
    assert present_structures(np.zeros((2, 3, 4), dtype=dtype), VALUES) == []


@pytest.mark.parametrize("values", [{"a": 1, "b": 1}, {"a": 0}, {"a": -2}])
def test_structure_values_must_be_distinct_and_positive(values: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        structure_rows(np.zeros((1, 2, 2), dtype=np.uint8), values)
