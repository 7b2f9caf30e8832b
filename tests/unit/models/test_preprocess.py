"""Model-space preprocessing and its exact inverse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.preprocess import (
    SquareGeometry,
    from_model_space,
    normalise_intensity,
    stack_channels,
    to_model_space,
)


@pytest.mark.parametrize("shape", [(64, 64), (50, 80), (130, 90)])
def test_round_trip_restores_shape_and_labels(shape: tuple[int, int]) -> None:
    geometry = SquareGeometry(*shape, size=64)
    labels = np.zeros((2, *shape), dtype=np.float32)
    labels[:, shape[0] // 4 : shape[0] // 2, shape[1] // 4 : shape[1] // 2] = 1
    model = to_model_space(torch.from_numpy(labels)[:, None], geometry, "nearest")
    assert model.shape == (2, 1, 64, 64)
    logits = torch.cat([1 - model, model], 1) * 10
    back = from_model_space(logits, geometry).argmax(1).numpy()
    assert back.shape == (2, *shape)
    assert (back == labels).mean() > 0.97


def test_identity_when_already_model_size() -> None:
    geometry = SquareGeometry(32, 32, 32)
    volume = torch.rand(1, 2, 32, 32)
    assert torch.equal(to_model_space(volume, geometry, "bilinear"), volume)
    assert torch.equal(from_model_space(volume, geometry), volume)
    with pytest.raises(ValueError):
        to_model_space(torch.rand(1, 1, 31, 32), geometry, "bilinear")


def test_normalisation_and_channel_stacking() -> None:
    volume = np.arange(1000, dtype=np.uint16).reshape(10, 10, 10)
    normalised = normalise_intensity(volume)
    assert normalised.dtype == np.float32 and normalised.min() == 0 and normalised.max() == 1
    assert stack_channels(volume, None, 2).shape == (10, 2, 10, 10)  # T2 duplicated
    assert stack_channels(volume, volume[:5], 2)[:, 0].shape == (10, 10, 10)
    assert stack_channels(volume, volume, 1).shape == (10, 1, 10, 10)
    with pytest.raises(ValueError):
        stack_channels(volume, None, 3)
