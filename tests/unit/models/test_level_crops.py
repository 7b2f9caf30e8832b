"""Disc-aligned level crops: the disc frame, the crop geometry, slots and their validity."""

from __future__ import annotations

import math

import pytest
import torch

from models.level_crops import LevelCropEncoder, central_window, disc_frame


def tilted_bar(angle: float, centre: tuple[float, float], size: int = 64) -> torch.Tensor:
    """A 2-D mask: a 24 x 4 px bar whose long axis makes ``angle`` with the columns."""
    rows, cols = torch.meshgrid(
        torch.arange(size, dtype=torch.float32),
        torch.arange(size, dtype=torch.float32),
        indexing="ij",
    )
    dr, dc = rows - centre[0], cols - centre[1]
    along = dc * math.cos(angle) + dr * math.sin(angle)
    across = -dc * math.sin(angle) + dr * math.cos(angle)
    return (along.abs() <= 12) & (across.abs() <= 2)


@pytest.mark.parametrize("angle", [-0.6, -0.2, 0.0, 0.3, 0.7])
def test_disc_frame_finds_the_centre_and_long_axis(angle: float) -> None:
    centre, found = disc_frame(tilted_bar(angle, (30.0, 25.0)))
    assert torch.allclose(centre, torch.tensor([30.0, 25.0]), atol=0.3)
    assert float(found) == pytest.approx(angle, abs=0.04)


def test_disc_frame_rejects_an_empty_mask() -> None:
    with pytest.raises(ValueError):
        disc_frame(torch.zeros(8, 8, dtype=torch.bool))


def test_central_window_is_centred_and_stays_inside() -> None:
    present = torch.tensor([False, False, True, True, True, True, True, False, False, False])
    assert central_window(present, 3).tolist() == [3, 4, 5]
    assert central_window(present, 20).tolist() == list(range(10))
    edge = torch.tensor([True, True, False, False, False, False])
    assert central_window(edge, 4).tolist() == [0, 1, 2, 3]


def crop_of(encoder: LevelCropEncoder, image: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The crops the encoder samples for disc value 11."""
    return encoder.sample(image, labels, (11,))[0]


def test_the_crop_is_rotated_into_the_disc_frame() -> None:
    """A marker 10 px along the disc axis (posteriorly) lands 10 px right of the crop centre."""
    angle = 0.4
    disc = tilted_bar(angle, (32.0, 30.0))
    labels = (disc.long() * 11).unsqueeze(0)
    image = torch.zeros(1, 1, 64, 64)
    r = round(32 + 10 * math.sin(angle))
    c = round(30 + 10 * math.cos(angle))
    image[0, 0, r, c] = 1.0
    encoder = LevelCropEncoder(1, 2, rows=9, cols=31, max_slices=1).eval()
    crop = crop_of(encoder, image, labels)[0, 0]
    row, col = divmod(int(crop.argmax()), crop.shape[1])
    assert (row, col) == (4, 15 + 10)


def test_levels_without_a_disc_are_empty_slots() -> None:
    torch.manual_seed(0)
    encoder = LevelCropEncoder(2, 4, rows=8, cols=12, max_slices=2).eval()
    labels = torch.zeros(5, 32, 32, dtype=torch.long)
    labels[1:4, 10:13, 8:20] = 12  # L4/L5 on slices 1-3
    labels[4, 5, 5] = 11  # two pixels of L5/S1: too few to crop
    labels[4, 5, 6] = 11
    out = encoder(torch.rand(5, 2, 32, 32), labels, (13, 12, 11))
    assert out.features.shape == (3, 2, encoder.out_features)
    assert out.valid.tolist() == [[False, False], [True, True], [False, False]]
    assert out.slice_index[1].tolist() == [1, 2]  # the window holds the middle slice, 2
    assert torch.count_nonzero(out.features[[0, 2]]) == 0
    assert torch.count_nonzero(out.features[1]) > 0


def test_training_jitters_the_crop_frame_and_evaluation_does_not() -> None:
    encoder = LevelCropEncoder(1, 2, rows=8, cols=12, max_slices=1)
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[0, 14:18, 6:26] = 11
    image = torch.rand(1, 1, 32, 32)
    encoder.eval()
    assert torch.equal(crop_of(encoder, image, labels), crop_of(encoder, image, labels))
    encoder.train()
    torch.manual_seed(1)
    assert not torch.equal(crop_of(encoder, image, labels), crop_of(encoder, image, labels))
