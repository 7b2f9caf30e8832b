"""Contract test over every registered image encoder (tiny variants)."""

from __future__ import annotations

import pytest
import torch

from models.image_encoders import ImageEncoder, list_encoders


def test_registry_lists_the_documented_families() -> None:
    names = list_encoders()
    for family in ("convnextv2", "resnet50", "vit", "swin"):
        assert any(family in n for n in names), family


@pytest.mark.parametrize("name", list_encoders())
@pytest.mark.parametrize("in_chans", [1, 2])
def test_encoder_contract(name: str, in_chans: int) -> None:
    torch.manual_seed(0)
    encoder = ImageEncoder(name, in_chans=in_chans, img_size=64, tiny=True)
    x = torch.randn(2, in_chans, 64, 64, requires_grad=True)
    maps = encoder(x)
    assert len(maps) == len(encoder.channels) == len(encoder.reductions)
    for feature, channels, reduction in zip(
        maps, encoder.channels, encoder.reductions, strict=True
    ):
        assert feature.shape == (2, channels, 64 // reduction, 64 // reduction)
        assert torch.isfinite(feature).all()
    sum(m.square().mean() for m in maps).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_unknown_encoder_raises() -> None:
    with pytest.raises(KeyError):
        ImageEncoder("no-such-encoder", 2, 64)
