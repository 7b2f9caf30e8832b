"""A series as the model takes it: pixels with their geometry (numpy only, no torch).

The node's DICOM side builds these from spooled series without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REFERENCE_ROLE = "SAG_T2"
"""The series role the model segments (required); the label map comes back in its geometry."""
SECOND_ROLE = "SAG_T1"
"""The series role the model reads as a second channel when present."""
INPUT_ROLES = (REFERENCE_ROLE, SECOND_ROLE)
"""Every series role the model reads, by the names of the node's series roles."""


@dataclass(frozen=True)
class VolumeInput:
    """One series as the model sees it.

    Attributes:
        pixels: (slices, rows, cols) float32, slices in order along the slice normal.
        pixel_spacing: (row spacing, col spacing) in mm.
        slice_positions_mm: (slices,) position of each slice along the slice normal.
        orientation: ImageOrientationPatient (6 direction cosines).
    """

    pixels: np.ndarray
    pixel_spacing: tuple[float, float]
    slice_positions_mm: np.ndarray
    orientation: tuple[float, ...]
