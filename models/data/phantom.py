"""Adapter from the phantom generator's studies to :class:`StudySample`."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.data.samples import StudySample


def slice_positions(image_positions: np.ndarray, orientation: tuple[float, ...]) -> np.ndarray:
    """Project ImagePositionPatient rows (S, 3) on the slice normal (row x col cosines).

    Raises:
        ValueError: if ``orientation`` does not have 6 values.
    """
    if len(orientation) != 6:
        raise ValueError("orientation must have 6 direction cosines")
    normal = np.cross(np.asarray(orientation[:3]), np.asarray(orientation[3:]))
    return np.asarray(image_positions, dtype=np.float64) @ normal


def phantom_to_sample(study: Any) -> StudySample:
    """Convert a ``models.phantom.PhantomStudy`` (typed loosely: the phantom is optional).

    Raises:
        ValueError: if the study has no SAG_T2 series.
    """
    by_role = {s.role: s for s in study.series}
    if "SAG_T2" not in by_role:
        raise ValueError("phantom study without SAG_T2")
    t2 = by_role["SAG_T2"]
    t1 = by_role.get("SAG_T1")
    orientation = tuple(float(v) for v in t2.image_orientation)
    return StudySample(
        study_id=f"phantom-{study.seed}",
        t2=t2.pixels.astype(np.float32),
        t1=None if t1 is None else t1.pixels.astype(np.float32),
        labels=None if t2.labels is None else t2.labels.astype(np.uint8),
        annotated=None,
        pixel_spacing=(float(t2.pixel_spacing[0]), float(t2.pixel_spacing[1])),
        slice_positions_mm=slice_positions(t2.image_positions, orientation),
        orientation=orientation,
        findings=study.findings,
        report=study.report,
    )
