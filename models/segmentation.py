"""The segmentation decoder: a U-Net from the encoder's maps to per-pixel features.

The segmentation heads that turn those features into class logits are registered in
:mod:`models.heads.segmentation`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as nnf
from torch import nn


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convolutions, each with BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNetDecoder(nn.Module):
    """U-Net decoder over the encoder maps, plus convolution stages at the strides finer than the
    encoder's finest map.

    The timm encoders start at stride 2 to 16 (ConvNeXt's patchify stem at 4): too coarse for a disc
    4 px high. So convolution blocks on the image at strides 1, 2, ... up to the encoder's finest
    stride supply the fine detail, and each decoder block upsamples the coarser result,
    concatenates the skip at its scale and applies two convolutions. At the encoder's scales the
    decoder has ``channels`` channels; the stage at stride ``s`` has ``channels * s / finest``
    (at least 8).

    Output: (B, out_channels, H, W) features at input resolution.
    """

    def __init__(
        self, encoder_channels: list[int], finest_reduction: int, in_chans: int, channels: int
    ) -> None:
        """Build the full-resolution stages and the decoder blocks.

        Raises:
            ValueError: if ``encoder_channels`` is empty or ``finest_reduction`` is not a power
                of 2.
        """
        super().__init__()
        if not encoder_channels:
            raise ValueError("no encoder maps")
        if finest_reduction < 1 or finest_reduction & (finest_reduction - 1):
            raise ValueError(f"finest_reduction must be a power of 2, got {finest_reduction}")
        strides = [2**i for i in range(finest_reduction.bit_length() - 1)]  # 1, 2, ... < finest
        widths = [max(channels * s // finest_reduction, 8) for s in strides]
        self.fine = nn.ModuleList(
            conv_block(previous, width)
            for previous, width in zip([in_chans, *widths[:-1]], widths, strict=True)
        )
        self.up_coarse = nn.ModuleList(
            conv_block(arriving + skip, channels)
            for arriving, skip in zip(
                [encoder_channels[-1], *[channels] * (len(encoder_channels) - 2)],
                reversed(encoder_channels[:-1]),
                strict=True,
            )
        )
        coarse_out = channels if len(encoder_channels) > 1 else encoder_channels[-1]
        self.up_fine = nn.ModuleList(
            conv_block(arriving + width, width)
            for arriving, width in zip([coarse_out, *widths[:0:-1]], widths[::-1], strict=True)
        )
        self.out_channels = widths[0] if widths else coarse_out

    def forward(self, image: torch.Tensor, maps: list[torch.Tensor]) -> torch.Tensor:
        """Decode encoder ``maps`` (finest first) for ``image``."""
        skips = []
        x = image
        for i, block in enumerate(self.fine):
            x = block(x if i == 0 else nnf.max_pool2d(x, 2))
            skips.append(x)
        top = maps[-1]
        for block, skip in zip(self.up_coarse, reversed(maps[:-1]), strict=True):
            top = block(torch.cat([_upsample(top, skip), skip], dim=1))
        if not skips:
            return _upsample(top, image)
        for block, skip in zip(self.up_fine, reversed(skips), strict=True):
            top = block(torch.cat([_upsample(top, skip), skip], dim=1))
        return top


def _upsample(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` resized bilinearly to the spatial size of ``like`` (unchanged if it matches)."""
    if x.shape[-2:] == like.shape[-2:]:
        return x
    return nnf.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)
