"""The named phantom distributions of the robustness suite."""

from __future__ import annotations

import numpy as np
import pytest

from models.phantom import PhantomConfig, generate_study
from models.robustness import SHIFTS, SUITES, phantom_preset, randomised


def test_every_shift_moves_one_aspect_of_the_small_preset() -> None:
    small = PhantomConfig.small()
    for name, (description, factory) in SHIFTS.items():
        config = factory()
        assert description
        changed = [f for f in vars(small) if getattr(config, f) != getattr(small, f)]
        if name == "baseline":
            assert changed == []
        elif name != "standard":
            assert 1 <= len(changed) <= 2, (name, changed)
    for shifts, (start, stop) in SUITES.values():
        assert set(shifts) <= set(SHIFTS) and stop > start


def test_training_never_sees_the_contrast_curve() -> None:
    assert randomised().contrast_gamma == (1.0, 1.0)
    assert SHIFTS["contrast_curve"][1]().contrast_gamma != (1.0, 1.0)


def test_presets_by_name() -> None:
    assert phantom_preset("small") == PhantomConfig.small()
    assert phantom_preset("fov_small").sag_fov_mm == (230.0, 250.0)
    with pytest.raises(ValueError, match="unknown phantom preset"):
        phantom_preset("nope")


def test_coverage_above_the_sacrum_and_contrast_curve_change_the_images() -> None:
    base = generate_study(7, PhantomConfig.small())
    high = generate_study(7, phantom_preset("coverage_high"))
    assert "S" in base.visible_structures and "L5/S1" in base.visible_structures
    assert high.series[0].image_positions[0][2] > base.series[0].image_positions[0][2]
    curved = generate_study(7, phantom_preset("contrast_curve"))
    assert curved.series[0].pixels.shape == base.series[0].pixels.shape
    assert not np.array_equal(curved.series[0].pixels, base.series[0].pixels)
