"""Checks and orders a source series and the label map the model produced for it."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset

_REQUIRED = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
)


PATIENT_STUDY_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "ReferringPhysicianName",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
)
"""Type 2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1): a result
object copies them from its source and must carry them, empty when unknown."""


def with_type2_attributes(source: Dataset) -> Dataset:
    """``source``, or a copy of it in which the Type 2 patient and study attributes it lacks are
    present and empty (senders that omit them would otherwise make every result fail).

    Raises:
        Nothing.
    """
    missing = [keyword for keyword in PATIENT_STUDY_TYPE2 if keyword not in source]
    if not missing:
        return source
    filled = copy.deepcopy(source)
    for keyword in missing:
        setattr(filled, keyword, None)
    return filled


def _slice_normal(image: Dataset) -> np.ndarray:
    """Unit normal of an image plane (row direction x column direction)."""
    orientation = np.asarray(image.ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    return normal / np.linalg.norm(normal)


def ordered_series(
    source_images: Sequence[Dataset], label_map: np.ndarray
) -> tuple[list[Dataset], np.ndarray]:
    """Validate a single-frame series with its label map and sort both along the slice normal.

    Args:
        source_images: The series' instances (headers suffice), in any order.
        label_map: Integer array (slices, rows, cols); ``label_map[i]`` belongs to
            ``source_images[i]``.

    Returns:
        The images and the label map, reordered together by position along the slice normal, so
        the result does not depend on the order the instances arrived in.

    Raises:
        ValueError: if the series is empty, mixes studies, series, frames of reference or
            orientations, lacks geometry, or the label map does not match it in shape or type.
    """
    if len(source_images) == 0:
        raise ValueError("source_images is empty")
    for image in source_images:
        missing = [k for k in _REQUIRED if k not in image]
        if missing:
            raise ValueError(f"source image lacks {', '.join(missing)}")
    first = source_images[0]
    for keyword in (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
        "Rows",
        "Columns",
    ):
        if len({str(image[keyword].value) for image in source_images}) != 1:
            raise ValueError(f"source images differ in {keyword}")
    normal = _slice_normal(first)
    for image in source_images[1:]:
        if abs(float(np.dot(_slice_normal(image), normal))) < 0.999:
            raise ValueError("source images are not parallel slices")
    if label_map.ndim != 3 or label_map.shape != (len(source_images), first.Rows, first.Columns):
        raise ValueError(
            f"label_map shape {label_map.shape} does not match "
            f"{len(source_images)} slices of {first.Rows}x{first.Columns}"
        )
    if not np.issubdtype(label_map.dtype, np.integer):
        raise ValueError(f"label_map must be an integer array, not {label_map.dtype}")
    positions = [
        float(np.dot(normal, np.asarray(i.ImagePositionPatient, float))) for i in source_images
    ]
    order = sorted(
        range(len(source_images)), key=lambda i: (positions[i], source_images[i].SOPInstanceUID)
    )
    return [source_images[i] for i in order], label_map[order]


@dataclass(frozen=True)
class StructureRows:
    """Where one label value lies on one slice: every voxel of it is in rows ``top`` to ``bottom``
    (exclusive) of slice ``index``."""

    index: int
    value: int
    top: int
    bottom: int


def _row_bounds(label_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per slice and row, the smallest positive label and the largest label: a row can only hold
    the values between the two (none at all where the largest is not positive)."""
    largest = label_map.max(axis=2)
    if label_map.dtype == np.uint8:
        # 0 - 1 wraps to 255, so the minimum skips the background; an empty row wraps back to 0.
        return (label_map - np.uint8(1)).min(axis=2) + np.uint8(1), largest
    positive = np.where(label_map > 0, label_map, np.iinfo(label_map.dtype).max)
    return positive.min(axis=2), largest


def structure_rows(
    label_map: np.ndarray, structure_values: Mapping[str, int]
) -> list[StructureRows]:
    """Locate every structure on every slice in a few passes over ``label_map``.

    Per-row bounds narrow each (slice, value) pair down to a band of rows, and only that band is
    compared with the value.

    Args:
        label_map: Integer array (slices, rows, cols).
        structure_values: Structure name -> label value.

    Returns:
        One entry per (slice, value) pair with at least one voxel, by value, then by slice.

    Raises:
        ValueError: if two names share a value or a value is not positive.
    """
    values = list(structure_values.values())
    if len(set(values)) != len(values):
        raise ValueError("structure_values maps two names to one value")
    if any(v <= 0 for v in values):
        raise ValueError("structure values must be positive (0 is background)")
    smallest, largest = _row_bounds(label_map)
    located = []
    for value in sorted(values):
        candidate = (smallest <= value) & (value <= largest)
        for index in np.flatnonzero(candidate.any(axis=1)).tolist():
            rows = np.flatnonzero(candidate[index])
            top, bottom = int(rows[0]), int(rows[-1]) + 1
            if (label_map[index, top:bottom] == value).any():
                located.append(StructureRows(index, value, top, bottom))
    return located


def present_structures(
    label_map: np.ndarray, structure_values: Mapping[str, int]
) -> list[tuple[str, int]]:
    """Return the ``(name, value)`` pairs that have at least one voxel, ordered by value.

    Raises:
        ValueError: if two names share a value or a value is not positive.
    """
    return named_structures(structure_rows(label_map, structure_values), structure_values)


def named_structures(
    located: Sequence[StructureRows], structure_values: Mapping[str, int]
) -> list[tuple[str, int]]:
    """The ``(name, value)`` pairs of the values in ``located``, ordered by value."""
    found = {rows.value for rows in located}
    return sorted(
        ((name, value) for name, value in structure_values.items() if value in found),
        key=lambda item: item[1],
    )
