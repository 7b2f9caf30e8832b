"""Model-space preprocessing and its exact inverse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.config import ModelConfig
from models.preprocess import (
    SquareGeometry,
    from_model_space,
    model_geometry,
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


def test_fixed_spacing_keeps_anatomy_size_whatever_the_field_of_view() -> None:
    config = ModelConfig(img_size=64, spacing_mm=2.0)
    for side, spacing in ((128, 1.0), (256, 1.0), (96, 3.0)):
        geometry = model_geometry(side, side, (spacing, spacing), config, training=False)
        assert geometry.resized == round(side * spacing / 2.0)
        assert geometry.size % 32 == 0 and geometry.size >= max(64, geometry.resized)
        labels = np.zeros((1, side, side), dtype=np.float32)
        labels[0, side // 2 - 10 : side // 2 + 10, side // 2 - 10 : side // 2 + 10] = 1
        model = to_model_space(torch.from_numpy(labels)[:, None], geometry, "nearest")
        # a 20-pixel square of `spacing` mm is 20 * spacing / 2 model pixels wide, centred
        width = int(model[0, 0].any(0).sum())
        assert abs(width - 20 * spacing / 2.0) <= 1
        logits = torch.cat([1 - model, model], 1) * 10
        back = from_model_space(logits, geometry).argmax(1).numpy()
        assert back.shape == labels.shape and (back == labels).mean() > 0.98


def test_training_geometry_pads_or_crops_to_the_model_size() -> None:
    config = ModelConfig(img_size=64, spacing_mm=2.0)
    large = model_geometry(200, 200, (1.0, 1.0), config, training=True)  # 100 px: cropped
    small = model_geometry(80, 80, (1.0, 1.0), config, training=True)  # 40 px: padded
    for geometry, side in ((large, 200), (small, 80)):
        volume = torch.rand(2, 1, side, side)
        assert to_model_space(volume, geometry, "bilinear").shape == (2, 1, 64, 64)
    with pytest.raises(ValueError, match="no inverse"):
        from_model_space(torch.rand(1, 2, 64, 64), large)
    assert from_model_space(torch.rand(1, 2, 64, 64), small).shape == (1, 2, 80, 80)


def test_zero_spacing_is_the_stretch_of_earlier_releases() -> None:
    geometry = model_geometry(100, 80, (0.7, 0.7), ModelConfig(img_size=64), training=False)
    assert geometry == SquareGeometry(100, 80, 64)


def test_resized_labels_stay_on_the_resized_image() -> None:
    config = ModelConfig(img_size=64, spacing_mm=2.0)
    mask = np.zeros((1, 1, 137, 137), dtype=np.float32)
    mask[..., 40:52, 30:100] = 1  # a disc-like band, 12 px high
    geometry = model_geometry(137, 137, (0.95, 0.95), config, training=True)
    image = to_model_space(torch.from_numpy(mask), geometry, "bilinear") > 0.5
    labels = to_model_space(torch.from_numpy(mask), geometry, "nearest") > 0.5
    assert float((image & labels).sum() / (image | labels).sum()) > 0.97  # "nearest": 0.94
