"""Spool series to volumes: slice order from geometry, rescale, refusals."""

from __future__ import annotations

import random

import numpy as np
import pydicom
import pytest

from worker.io import read_series, series_from_datasets
from worker.phantom import WrittenStudy


def sag_t2(study: WrittenStudy) -> list[pydicom.Dataset]:
    paths = next(s.paths for s in study.series if s.role == "SAG_T2")
    return [pydicom.dcmread(p) for p in paths]


def test_slices_sorted_along_the_normal_whatever_the_arrival_order(
    phantom_study: WrittenStudy,
) -> None:
    datasets = sag_t2(phantom_study)
    shuffled = datasets[:]
    random.Random(1).shuffle(shuffled)
    # Instance numbers must not matter: scramble them.
    for number, dataset in enumerate(reversed(shuffled)):
        dataset.InstanceNumber = number
    loaded = series_from_datasets(shuffled)
    positions = loaded.volume.slice_positions_mm
    assert np.all(np.diff(positions) > 0)
    reference = series_from_datasets(datasets)
    assert [d.SOPInstanceUID for d in loaded.datasets] == [
        d.SOPInstanceUID for d in reference.datasets
    ]
    np.testing.assert_array_equal(loaded.volume.pixels, reference.volume.pixels)
    first = loaded.datasets[0]
    assert loaded.volume.pixels.shape == (len(datasets), first.Rows, first.Columns)
    assert loaded.volume.pixel_spacing == tuple(float(v) for v in first.PixelSpacing)
    assert loaded.volume.orientation == tuple(float(v) for v in first.ImageOrientationPatient)


def test_rescale_slope_and_intercept_are_applied(phantom_study: WrittenStudy) -> None:
    datasets = sag_t2(phantom_study)
    raw = series_from_datasets(datasets).volume.pixels
    for dataset in datasets:
        dataset.RescaleSlope, dataset.RescaleIntercept = 2, -10
    scaled = series_from_datasets(datasets).volume.pixels
    np.testing.assert_allclose(scaled, raw * 2 - 10)


def test_read_series_from_files(phantom_study: WrittenStudy) -> None:
    paths = next(s.paths for s in phantom_study.series if s.role == "SAG_T2")
    assert len(read_series(list(paths)).datasets) == len(paths)


def test_refuses_what_is_not_one_volume(phantom_study: WrittenStudy) -> None:
    with pytest.raises(ValueError, match="at least one"):
        series_from_datasets([])
    datasets = sag_t2(phantom_study)
    datasets[1].ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="not parallel"):
        series_from_datasets(datasets)
    datasets = sag_t2(phantom_study)
    del datasets[0].ImagePositionPatient
    with pytest.raises(ValueError, match="lacks ImagePositionPatient"):
        series_from_datasets(datasets)
    axial = next(s.paths for s in phantom_study.series if s.role == "AX_T2")
    mixed = [*sag_t2(phantom_study)[:2], pydicom.dcmread(axial[0])]
    with pytest.raises(ValueError, match="more than one series"):
        series_from_datasets(mixed)
