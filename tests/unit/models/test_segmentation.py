"""The U-Net decoder: full-resolution features over every registered encoder."""

from __future__ import annotations

import pytest
import torch

from models.image_encoders import ImageEncoder, list_encoders
from models.segmentation import UNetDecoder


@pytest.mark.parametrize("name", list_encoders())
def test_decoder_gives_full_resolution_features_over_every_encoder(name: str) -> None:
    torch.manual_seed(0)
    encoder = ImageEncoder(name, in_chans=2, img_size=64, tiny=True)
    decoder = UNetDecoder(encoder.channels, encoder.reductions[0], 2, 16)
    image = torch.randn(2, 2, 64, 64, requires_grad=True)
    features = decoder(image, encoder(image))
    assert features.shape == (2, decoder.out_channels, 64, 64)
    assert torch.isfinite(features).all()
    features.square().mean().backward()
    assert image.grad is not None and torch.isfinite(image.grad).all()
    # one full-resolution stage per stride finer than the encoder's finest map
    assert len(decoder.fine) == encoder.reductions[0].bit_length() - 1


def test_fine_stage_widths_scale_with_stride() -> None:
    decoder = UNetDecoder([40, 80, 160, 320], 4, 2, 64)
    widths = [stage[0].out_channels for stage in decoder.fine]
    assert widths == [16, 32] and decoder.out_channels == 16
    assert [stage[0].out_channels for stage in decoder.up_coarse] == [64, 64, 64]
    narrow = UNetDecoder([8, 16], 4, 1, 16)
    assert [stage[0].out_channels for stage in narrow.fine] == [8, 8]


def test_bad_decoder_arguments_raise() -> None:
    with pytest.raises(ValueError, match="no encoder maps"):
        UNetDecoder([], 4, 2, 16)
    with pytest.raises(ValueError, match="power of 2"):
        UNetDecoder([8], 3, 2, 16)
