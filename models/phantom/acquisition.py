"""Scan planning and sequence parameters, as a lumbar spine protocol on a real scanner has them.

The sagittal block is planned once and shared by SAG_T1, SAG_T2 and SAG_STIR (same slice positions
and in-plane geometry, as on a scanner), so their labels are one volume. The axial T2 stack runs
parallel to the L4/L5 disc from above L3/L4 to below L5/S1. An optional localizer is a coronal
gradient-echo scout.
"""

from __future__ import annotations

import numpy as np

from models.phantom.anatomy import Anatomy, axis, normal
from models.phantom.canvas import Plane
from models.phantom.config import PhantomConfig

SAG_ROW = np.array([0.0, 1.0, 0.0])  # along a row: towards posterior
SAG_COL = np.array([0.0, 0.0, -1.0])  # down a column: towards the feet

_DESCRIPTIONS = {
    "SAG_T1": ("T1 TSE SAG", "SAG T1", "t1_tse_sag", "Sag T1 FSE"),
    "SAG_T2": ("T2 TSE SAG", "SAG T2", "t2_tse_sag", "Sag T2 FSE"),
    "SAG_STIR": ("STIR SAG", "SAG STIR", "t2_tirm_sag", "Sag STIR FSE"),
    "AX_T2": ("T2 TSE AX", "AX T2", "t2_tse_tra", "Ax T2 FSE"),
    "LOCALIZER": ("LOCALIZER", "localizer", "3-pl loc", "Scout"),
}


def image_positions(planes: tuple[Plane, ...]) -> np.ndarray:
    """``(slices, 3)`` ImagePositionPatient of each slice."""
    return np.array([p.origin for p in planes])


def image_orientation(planes: tuple[Plane, ...]) -> tuple[float, ...]:
    """ImageOrientationPatient of a stack (row then column direction cosines)."""
    p = planes[0]
    return tuple(float(v) for v in (*p.row_dir, *p.col_dir))


def _stack(
    centre: np.ndarray,
    row_dir: np.ndarray,
    col_dir: np.ndarray,
    step: np.ndarray,
    count: int,
    spacing: float,
    matrix: int,
) -> tuple[Plane, ...]:
    """Planes of ``matrix``² pixels centred on ``centre + (k - (count-1)/2) step``."""
    planes = []
    half = (matrix - 1) / 2 * spacing
    for k in range(count):
        c = centre + (k - (count - 1) / 2) * step
        origin = c - half * row_dir - half * col_dir
        planes.append(Plane(origin, row_dir, col_dir, (spacing, spacing), (matrix, matrix)))
    return tuple(planes)


def plan_sagittal(
    rng: np.random.Generator, config: PhantomConfig, anatomy: Anatomy
) -> tuple[tuple[Plane, ...], float]:
    """Plan the sagittal block: slices ordered from the patient's right to left.

    The bottom of the field of view sits ``sag_bottom_mm`` below the S1 endplate (5-9 cm by
    default), so how high it reaches (T9 or only T11) varies with the field of view and the
    patient's size.

    Returns:
        The planes and the slice thickness.
    """
    count = int(rng.integers(config.sag_slices[0], config.sag_slices[1] + 1))
    thickness = float(rng.uniform(*config.sag_thickness_mm))
    gap = thickness * (1.0 + config.slice_gap)
    matrix = int(rng.choice(config.sag_matrix))
    fov = float(rng.uniform(*config.sag_fov_mm))
    s1 = anatomy.segment("S")
    s1_top_z = s1.centre[1] + axis(s1.phi)[1] * s1.height / 2
    bottom = s1_top_z - rng.uniform(*config.sag_bottom_mm)
    l3 = anatomy.segment("L3")
    skin_y = l3.centre[0] + anatomy.outline.skin_n * np.cos(l3.phi)
    centre = np.array(
        [
            anatomy.x_mid + rng.uniform(-1.5, 1.5),
            skin_y + rng.uniform(25.0, 65.0) - fov / 2,
            bottom + fov / 2,
        ]
    )
    step = np.array([gap, 0.0, 0.0])
    return _stack(centre, SAG_ROW, SAG_COL, step, count, fov / matrix, matrix), thickness


def plan_axial(
    rng: np.random.Generator, config: PhantomConfig, anatomy: Anatomy
) -> tuple[tuple[Plane, ...], float]:
    """Plan the axial stack parallel to L4/L5, covering L3/L4 to L5/S1; slices head to feet.

    Returns:
        The planes and the slice thickness.
    """
    ref = anatomy.disc("L4/L5")
    ax = axis(ref.phi)
    nrm = normal(ref.phi)
    centres = [np.array(anatomy.disc(n).centre) for n in ("L3/L4", "L4/L5", "L5/S1")]
    ts = [float((c - np.array(ref.centre)) @ ax) for c in centres]
    top, bottom = max(ts), min(ts)
    spacing = config.ax_thickness_mm * (1.0 + config.slice_gap)
    count = int(np.ceil((top - bottom) / spacing)) + 3
    if count > config.ax_max_slices:
        count = config.ax_max_slices
        spacing = (top - bottom) / max(count - 3, 1)
    thickness = min(config.ax_thickness_mm, spacing)
    matrix = int(rng.choice(config.ax_matrix))
    fov = float(rng.uniform(*config.ax_fov_mm))
    mid = np.array(ref.centre) + ax * (top + bottom) / 2 + nrm * rng.uniform(5.0, 20.0)
    centre = np.array([anatomy.x_mid, mid[0], mid[1]])
    row_dir = np.array([1.0, 0.0, 0.0])
    col_dir = np.array([0.0, nrm[0], nrm[1]])
    step = -spacing * np.array([0.0, ax[0], ax[1]])
    return _stack(centre, row_dir, col_dir, step, count, fov / matrix, matrix), thickness


def plan_localizer(anatomy: Anatomy) -> tuple[tuple[Plane, ...], float]:
    """Three coronal scout slices through the spine, 256² over 360 mm, 8 mm thick."""
    l2 = anatomy.segment("L2")
    centre = np.array([anatomy.x_mid, l2.centre[0] + 20.0, l2.centre[1]])
    row_dir = np.array([1.0, 0.0, 0.0])
    col_dir = np.array([0.0, 0.0, -1.0])
    return _stack(centre, row_dir, col_dir, np.array([0.0, 25.0, 0.0]), 3, 360.0 / 256, 256), 8.0


def sequence(
    rng: np.random.Generator, role: str, field_strength: float, thickness: float, spacing: float
) -> tuple[dict[str, float | str], str, int]:
    """Sample the sequence of a series: acquisition attributes, description, phase axis.

    Raises:
        ValueError: if ``role`` is unknown.
    """
    if role not in _DESCRIPTIONS:
        raise ValueError(f"unknown series role {role!r}")
    high = field_strength >= 2.0
    acq: dict[str, float | str] = {
        "MagneticFieldStrength": field_strength,
        "ImagingFrequency": round(42.577 * field_strength, 4),
        "MRAcquisitionType": "2D",
        "SliceThickness": round(thickness, 3),
        "SpacingBetweenSlices": round(spacing, 3),
        "NumberOfAverages": 1.0 if role != "SAG_STIR" else 2.0,
        "PixelBandwidth": float(round(rng.uniform(130.0, 260.0))),
        "FlipAngle": 90.0,
        "ScanningSequence": "SE",
        "SequenceVariant": "SK\\SP",
        "ScanOptions": "",
    }
    if role == "SAG_T1":
        acq |= {"RepetitionTime": rng.uniform(450.0, 700.0), "EchoTime": rng.uniform(8.0, 14.0)}
        acq |= {"EchoTrainLength": float(rng.integers(3, 5)), "SequenceName": "*tse2d1_3"}
    elif role in ("SAG_T2", "AX_T2"):
        acq |= {"RepetitionTime": rng.uniform(2800.0, 4500.0), "EchoTime": rng.uniform(85.0, 115.0)}
        acq |= {"EchoTrainLength": float(rng.integers(15, 26)), "SequenceName": "*tse2d1_17"}
    elif role == "SAG_STIR":
        ti = rng.uniform(210.0, 230.0) if high else rng.uniform(150.0, 170.0)
        acq |= {"RepetitionTime": rng.uniform(3500.0, 5000.0), "EchoTime": rng.uniform(40.0, 70.0)}
        acq |= {"InversionTime": ti, "EchoTrainLength": float(rng.integers(10, 17))}
        acq |= {"ScanningSequence": "SE\\IR", "SequenceVariant": "SK\\SP\\MP"}
        acq |= {"SequenceName": "*tir2d1_13"}
    else:
        acq |= {"RepetitionTime": 8.6, "EchoTime": 4.0, "FlipAngle": 20.0}
        acq |= {"EchoTrainLength": 1.0, "ScanningSequence": "GR", "SequenceVariant": "SP"}
        acq |= {"SequenceName": "*fl2d1"}
    for key in ("RepetitionTime", "EchoTime", "InversionTime"):
        if key in acq:
            acq[key] = round(float(acq[key]), 1)
    phase_axis = 0 if role.startswith("SAG") else 1
    acq["InPlanePhaseEncodingDirection"] = "COL" if phase_axis == 0 else "ROW"
    description = str(rng.choice(_DESCRIPTIONS[role]))
    return acq, description, phase_axis
