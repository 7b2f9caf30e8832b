"""Named phantom distributions: the shifts the robustness suite measures and the randomised
training preset.

Every shift is the ``small`` preset (what releases up to 0.6.0 trained on) with one aspect of
the acquisition moved outside it, so a drop in a metric names its cause. ``randomised`` widens
all of them at once for training, except the contrast curve, which training never sees (the
suite's unseen generator setting).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from models.phantom import PhantomConfig


def _small(**changes: Any) -> Callable[[], PhantomConfig]:
    return lambda: replace(PhantomConfig.small(), **changes)


#: Shift name -> (what it is, the generator settings). ``baseline`` is the training distribution.
SHIFTS: Mapping[str, tuple[str, Callable[[], PhantomConfig]]] = MappingProxyType(
    {
        "baseline": ("the small preset, as trained on (up to 0.6.0)", _small()),
        "noise_x3": (
            "Rician noise 6-9% of bright tissue (x3)",
            _small(noise_fraction=(0.06, 0.09)),
        ),
        "fov_small": ("sagittal field of view 230-250 mm", _small(sag_fov_mm=(230.0, 250.0))),
        "fov_large": ("sagittal field of view 350-380 mm", _small(sag_fov_mm=(350.0, 380.0))),
        "matrix_256": ("256 px sagittal matrix", _small(sag_matrix=(256,))),
        "standard": (
            "the standard preset: 384-512 px, 15-19 slices of 3.5-4 mm",
            lambda: replace(PhantomConfig.standard(), include_axial=False, include_stir=False),
        ),
        "thick_slices": (
            "5-6 mm slices, 7-9 of them",
            _small(sag_thickness_mm=(5.0, 6.0), sag_slices=(7, 9)),
        ),
        "bias_motion": (
            "coil fall-off 0.7-0.9 and motion ghosts in every series",
            _small(bias_strength=(0.7, 0.9), motion_probability=1.0),
        ),
        "contrast_curve": (
            "vendor-like contrast curves (signal^0.6-1.6); never seen in training",
            _small(contrast_gamma=(0.6, 1.6)),
        ),
        "coverage_high": (
            "coverage ends 0-40 mm above the S1 endplate (sacrum cut or missing)",
            _small(sag_bottom_mm=(-40.0, 0.0)),
        ),
    }
)

#: Suite name -> shifts it runs, and the held-out seeds per shift (``range`` arguments).
SUITES: Mapping[str, tuple[tuple[str, ...], tuple[int, int]]] = MappingProxyType(
    {
        "full": (tuple(SHIFTS), (63000, 63015)),
        "ci": (("baseline", "noise_x3", "fov_small", "coverage_high"), (63000, 63002)),
    }
)


def randomised() -> PhantomConfig:
    """The training preset of the robust release: every shift of the suite but the contrast
    curve, drawn per study over a wider range than the suite tests."""
    return replace(
        PhantomConfig.small(),
        sag_matrix=(128, 128, 192, 256),
        sag_fov_mm=(220.0, 400.0),
        sag_bottom_mm=(-45.0, 100.0),
        sag_slices=(7, 12),
        sag_thickness_mm=(3.5, 6.5),
        noise_fraction=(0.005, 0.10),
        bias_strength=(0.2, 0.95),
        motion_probability=0.35,
    )


def phantom_preset(name: str) -> PhantomConfig:
    """The generator settings called ``name``: ``small``, ``standard``, ``randomised`` or a
    shift of :data:`SHIFTS`.

    Raises:
        ValueError: on an unknown name.
    """
    if name == "small":
        return PhantomConfig.small()
    if name == "standard":
        return PhantomConfig.standard()
    if name == "randomised":
        return randomised()
    if name in SHIFTS:
        return SHIFTS[name][1]()
    raise ValueError(f"unknown phantom preset {name!r}")
