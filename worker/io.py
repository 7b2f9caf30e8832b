"""Spool series -> volumes: numpy pixels with their geometry, no torch.

Slices are ordered by their position along the slice normal (from ImagePositionPatient and
ImageOrientationPatient), not by instance number or arrival order; pixel values are rescaled
(RescaleSlope/RescaleIntercept). The sorted datasets are kept so result builders reference exactly
the instances the model saw, in the same order as the volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from models.volume import VolumeInput

PARALLEL_TOLERANCE = 0.999
"""Minimum |cos| between slice normals of one series."""


@dataclass(frozen=True)
class LoadedSeries:
    """A series read from the spool: the datasets in volume order, and the volume."""

    datasets: tuple[Dataset, ...]
    volume: VolumeInput


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """The unit normal of slices with this ImageOrientationPatient.

    Raises:
        ValueError: if the two direction cosines are parallel.
    """
    cosines = np.asarray(orientation, dtype=float)
    normal = np.cross(cosines[:3], cosines[3:])
    length = float(np.linalg.norm(normal))
    if length < 1e-6:
        raise ValueError("ImageOrientationPatient is degenerate")
    return normal / length


def _pixels(dataset: Dataset) -> np.ndarray:
    pixels = dataset.pixel_array.astype(np.float32)
    slope = float(dataset.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(dataset.get("RescaleIntercept", 0.0) or 0.0)
    return pixels * np.float32(slope) + np.float32(intercept)


def series_from_datasets(datasets: Sequence[Dataset]) -> LoadedSeries:
    """Sort single-frame images of one series along their normal and stack them.

    Raises:
        ValueError: if the list is empty, or the images lack geometry, mix series, are not
            parallel, differ in size, or are multi-frame.
    """
    if not datasets:
        raise ValueError("a series needs at least one image")
    for dataset in datasets:
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if keyword not in dataset:
                raise ValueError(f"image {dataset.SOPInstanceUID} lacks {keyword}")
        if int(dataset.get("NumberOfFrames", 1) or 1) != 1:
            raise ValueError("multi-frame images are not supported")
    if len({str(d.SeriesInstanceUID) for d in datasets}) != 1:
        raise ValueError("images belong to more than one series")
    if len({(int(d.Rows), int(d.Columns)) for d in datasets}) != 1:
        raise ValueError("images of the series differ in size")
    first = datasets[0]
    normal = slice_normal(first.ImageOrientationPatient)
    for dataset in datasets[1:]:
        if (
            abs(float(np.dot(slice_normal(dataset.ImageOrientationPatient), normal)))
            < PARALLEL_TOLERANCE
        ):
            raise ValueError("images of the series are not parallel slices")
    positions = [
        float(np.dot(normal, np.asarray(d.ImagePositionPatient, dtype=float))) for d in datasets
    ]
    order = sorted(
        range(len(datasets)), key=lambda i: (positions[i], str(datasets[i].SOPInstanceUID))
    )
    ordered = tuple(datasets[i] for i in order)
    spacing = tuple(float(v) for v in first.PixelSpacing)
    volume = VolumeInput(
        pixels=np.stack([_pixels(d) for d in ordered]),
        pixel_spacing=(spacing[0], spacing[1]),
        slice_positions_mm=np.asarray([positions[i] for i in order], dtype=np.float32),
        orientation=tuple(float(v) for v in first.ImageOrientationPatient),
    )
    return LoadedSeries(ordered, volume)


def read_series(paths: Sequence[Path]) -> LoadedSeries:
    """Read a series' files from the spool and stack them (see :func:`series_from_datasets`).

    Raises:
        OSError: if a file cannot be read.
        pydicom.errors.InvalidDicomError: if a file is not DICOM.
        ValueError: if the images do not form one volume.
    """
    return series_from_datasets([pydicom.dcmread(path) for path in paths])
