"""Tissue classes and their relaxation parameters, and the spin-echo signal equations.

Values are approximate adult tissue properties at 1.5 T (T1 and T2 in ms, PD relative). Fat's T2
is the apparent T2 under turbo spin echo (J-coupling makes fat bright on TSE T2). At 3 T, T1 is
longer (scaled here by ``T1_SCALE_3T``) and T2 slightly shorter.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Tissue(IntEnum):
    """Tissue class painted into each voxel of the phantom."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    ORGAN = 3
    CORTEX = 4
    MARROW = 5
    ANNULUS = 6
    NUCLEUS = 7
    CSF = 8
    NERVE = 9
    VESSEL = 10
    LIGAMENT = 11
    MODIC1 = 12
    MODIC2 = 13
    MODIC3 = 14
    HERNIA = 15
    INTERSPINOUS = 16
    FLUID = 17


# PD, T1 (ms), T2 (ms) per tissue at 1.5 T.
_PROPERTIES: dict[Tissue, tuple[float, float, float]] = {
    Tissue.AIR: (0.0, 1000.0, 1.0),
    Tissue.FAT: (1.0, 260.0, 120.0),
    Tissue.MUSCLE: (0.75, 900.0, 50.0),
    Tissue.ORGAN: (0.8, 700.0, 65.0),
    Tissue.CORTEX: (0.06, 900.0, 8.0),
    Tissue.MARROW: (0.85, 420.0, 80.0),
    Tissue.ANNULUS: (0.6, 1000.0, 40.0),
    Tissue.NUCLEUS: (0.9, 1200.0, 140.0),
    Tissue.CSF: (1.0, 4000.0, 1800.0),
    Tissue.NERVE: (0.75, 850.0, 85.0),
    Tissue.VESSEL: (0.05, 1200.0, 50.0),
    Tissue.LIGAMENT: (0.25, 800.0, 15.0),
    Tissue.MODIC1: (0.9, 1300.0, 120.0),
    Tissue.MODIC2: (0.95, 300.0, 140.0),
    Tissue.MODIC3: (0.15, 900.0, 15.0),
    Tissue.HERNIA: (0.8, 1100.0, 75.0),
    Tissue.INTERSPINOUS: (0.7, 450.0, 70.0),
    Tissue.FLUID: (0.95, 2500.0, 600.0),
}
#: Relative amplitude of the fine-grained signal heterogeneity of each tissue (marrow trabeculae,
#: muscle fibres, bowel content); 0.02 elsewhere.
_TEXTURE_AMPLITUDE = {
    Tissue.MARROW: 0.10,
    Tissue.MUSCLE: 0.06,
    Tissue.ORGAN: 0.12,
    Tissue.FAT: 0.03,
    Tissue.NUCLEUS: 0.05,
    Tissue.ANNULUS: 0.06,
    Tissue.MODIC1: 0.12,
    Tissue.MODIC2: 0.12,
    Tissue.MODIC3: 0.08,
    Tissue.HERNIA: 0.06,
    Tissue.INTERSPINOUS: 0.08,
}
TEXTURE = np.array([_TEXTURE_AMPLITUDE.get(t, 0.02) for t in Tissue])
T1_SCALE_3T = 1.3
T2_SCALE_3T = 0.92


def tissue_table(
    rng: np.random.Generator, field_strength: float, jitter: float = 0.06
) -> np.ndarray:
    """Per-study tissue properties: a ``(len(Tissue), 3)`` array of PD, T1, T2.

    Args:
        rng: Random source for the per-study jitter.
        field_strength: 1.5 or 3.0 (T); other values scale linearly between the two.
        jitter: Relative standard deviation applied to every property.

    Returns:
        The table, rows indexed by ``Tissue``.

    Raises:
        ValueError: if ``field_strength`` is not positive.
    """
    if field_strength <= 0:
        raise ValueError("field_strength must be positive")
    frac = float(np.clip((field_strength - 1.5) / 1.5, 0.0, 1.0))
    table = np.array([_PROPERTIES[t] for t in Tissue], dtype=np.float64)
    table[:, 1] *= 1.0 + frac * (T1_SCALE_3T - 1.0)
    table[:, 2] *= 1.0 + frac * (T2_SCALE_3T - 1.0)
    table *= np.clip(rng.normal(1.0, jitter, size=table.shape), 0.7, 1.3)
    return table


def signal_lut(
    table: np.ndarray,
    repetition_time: float,
    echo_time: float,
    inversion_time: float | None = None,
    flip_angle: float = 90.0,
) -> np.ndarray:
    """Spin-echo, inversion-recovery or spoiled gradient-echo magnitude signal per tissue.

    ``S = PD (1 - e^(-TR/T1)) e^(-TE/T2)``; with an inversion pulse
    ``S = PD |1 - 2 e^(-TI/T1) + e^(-TR/T1)| e^(-TE/T2)`` (STIR nulls fat when TI ~ T1_fat ln 2);
    with a flip angle below 90 degrees, the spoiled gradient echo
    ``S = PD sin(a) (1 - E1) / (1 - cos(a) E1) e^(-TE/T2)``, ``E1 = e^(-TR/T1)``.

    Args:
        table: ``(N, 3)`` PD, T1, T2 from ``tissue_table``.
        repetition_time: TR (ms).
        echo_time: Effective TE (ms).
        inversion_time: TI (ms) for inversion recovery, else None.
        flip_angle: Excitation flip angle (degrees); below 90 means spoiled gradient echo.

    Returns:
        ``(N,)`` signal per tissue.

    Raises:
        ValueError: if a timing is not positive or TE is not shorter than TR.
    """
    if repetition_time <= 0 or echo_time <= 0 or echo_time >= repetition_time:
        raise ValueError("need 0 < TE < TR")
    pd, t1, t2 = table[:, 0], table[:, 1], table[:, 2]
    recovery = np.exp(-repetition_time / t1)
    if flip_angle < 90.0:
        alpha = np.deg2rad(flip_angle)
        longitudinal = np.sin(alpha) * (1.0 - recovery) / (1.0 - np.cos(alpha) * recovery)
    elif inversion_time is None:
        longitudinal = 1.0 - recovery
    else:
        if inversion_time <= 0:
            raise ValueError("TI must be positive")
        longitudinal = np.abs(1.0 - 2.0 * np.exp(-inversion_time / t1) + recovery)
    return pd * longitudinal * np.exp(-echo_time / t2)
