"""Text-guided segmentation: a U-Net decoder to pixel embeddings, scored against class queries.

Three heads share the decoder:

- ``TextGuidedHead``: ``logit_c(x) = s * <P(x), q_c> + b_c`` with ``q_c`` the normalised projection
  of structure prompt embedding ``t_c`` and ``b_c`` a linear map of ``t_c`` (LSeg/DenseCLIP style).
- ``UniversalHead``: a controller maps [GAP(bottleneck); projected t_c] to the weights of a tiny
  per-class 1x1-conv head (CLIP-Driven Universal Model).
- ``VisualHead``: the same dot product with learned class vectors instead of text (the ablation).

Channel 0 of every head's output is background, scored against a learned vector.
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


class TextGuidedHead(nn.Module):
    """Pixel-embedding x class-query dot product; queries come from the caller."""

    def __init__(self, channels: int, embed_dim: int) -> None:
        """Build the pixel embedding and the learnable scale and background query.

        Raises:
            Nothing.
        """
        super().__init__()
        self.pixel = nn.Conv2d(channels, embed_dim, 1)
        self.log_scale = nn.Parameter(torch.tensor(2.3))
        self.background = nn.Parameter(torch.randn(embed_dim) * 0.02)
        self.bias = nn.Linear(embed_dim, 1)

    def forward(
        self, features: torch.Tensor, queries: torch.Tensor, bottleneck: torch.Tensor
    ) -> torch.Tensor:
        """Logits (B, 1 + C, H, W) for queries (C, embed_dim)."""
        del bottleneck
        pixels = nnf.normalize(self.pixel(features), dim=1)
        all_queries = torch.cat([self.background.unsqueeze(0), queries])
        bias = self.bias(all_queries).squeeze(-1)
        logits = torch.einsum("bdhw,cd->bchw", pixels, nnf.normalize(all_queries, dim=-1))
        return self.log_scale.exp() * logits + bias[None, :, None, None]


class UniversalHead(nn.Module):
    """Per-class dynamic 1x1-conv heads (8 -> 8 -> 8 -> 1) generated by a text controller."""

    hidden = 8

    def __init__(self, channels: int, embed_dim: int, bottleneck_channels: int) -> None:
        """Build the controller and the 8-channel pre-classification conv.

        Raises:
            Nothing.
        """
        super().__init__()
        h = self.hidden
        self.num_params = h * h + h + h * h + h + h + 1
        self.pre = nn.Conv2d(channels, h, 1)
        self.global_proj = nn.Linear(bottleneck_channels, embed_dim)
        self.controller = nn.Linear(2 * embed_dim, self.num_params)
        self.background = nn.Parameter(torch.randn(embed_dim) * 0.02)

    def forward(
        self, features: torch.Tensor, queries: torch.Tensor, bottleneck: torch.Tensor
    ) -> torch.Tensor:
        """Logits (B, 1 + C, H, W)."""
        b, _, height, width = features.shape
        h = self.hidden
        x = nnf.relu(self.pre(features))  # (B, 8, H, W)
        all_queries = torch.cat([self.background.unsqueeze(0), queries])  # (K, D)
        k = all_queries.shape[0]
        glob = self.global_proj(bottleneck.mean((2, 3)))  # (B, D)
        params = self.controller(
            torch.cat([glob[:, None].expand(-1, k, -1), all_queries[None].expand(b, -1, -1)], -1)
        )  # (B, K, P)
        w1, b1, w2, b2, w3, b3 = torch.split(params, [h * h, h, h * h, h, h, 1], dim=-1)
        y = torch.einsum("bchw,bkoc->bkohw", x, w1.view(b, k, h, h)) + b1[..., None, None]
        y = (
            torch.einsum("bkchw,bkoc->bkohw", nnf.relu(y), w2.view(b, k, h, h))
            + b2[..., None, None]
        )
        y = torch.einsum("bkchw,bkc->bkhw", nnf.relu(y), w3) + b3[..., None]
        return y.view(b, k, height, width)


class VisualHead(TextGuidedHead):
    """The visual-only ablation: the same dot product with learned class vectors.

    The caller's queries are ignored; the class vectors are parameters.
    """

    def __init__(self, channels: int, embed_dim: int, num_classes: int) -> None:
        """Build the head with ``num_classes`` learned foreground vectors.

        Raises:
            Nothing.
        """
        super().__init__(channels, embed_dim)
        self.classes = nn.Parameter(torch.randn(num_classes, embed_dim) * 0.02)

    def forward(
        self, features: torch.Tensor, queries: torch.Tensor, bottleneck: torch.Tensor
    ) -> torch.Tensor:
        """Logits (B, 1 + C, H, W) from the learned class vectors."""
        del queries
        return super().forward(features, self.classes, bottleneck)
