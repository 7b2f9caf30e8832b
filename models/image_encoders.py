"""Registry of timm image encoders that return multi-scale NCHW feature maps.

Encoders are always built with ``pretrained=False``: no weights are ever downloaded. Each entry
has a full-size and a tiny variant (the tiny one is for tests on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import timm
import torch
from torch import nn


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one registered encoder with timm."""

    timm_name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    tiny_kwargs: dict[str, Any] = field(default_factory=dict)
    needs_img_size: bool = False


_REGISTRY: dict[str, EncoderSpec] = {}


def register_encoder(name: str, spec: EncoderSpec) -> None:
    """Register an encoder under ``name``.

    Raises:
        ValueError: if the name is taken.
    """
    if name in _REGISTRY:
        raise ValueError(f"encoder {name!r} already registered")
    _REGISTRY[name] = spec


def list_encoders() -> list[str]:
    """Names of all registered image encoders, sorted.

    Raises:
        Nothing.
    """
    return sorted(_REGISTRY)


register_encoder(
    "convnextv2_atto",
    EncoderSpec("convnextv2_atto", tiny_kwargs={"depths": (1, 1, 1, 1), "dims": (8, 16, 24, 32)}),
)
register_encoder(
    "convnextv2_nano",
    EncoderSpec("convnextv2_nano", tiny_kwargs={"depths": (1, 1, 1, 1), "dims": (8, 16, 24, 32)}),
)
register_encoder(
    "resnet50",
    EncoderSpec("resnet50", tiny_kwargs={"layers": [1, 1, 1, 1], "base_width": 8}),
)
register_encoder(
    "vit_small",
    EncoderSpec(
        "vit_small_patch16_224",
        kwargs={"out_indices": (3, 7, 11)},
        tiny_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2, "out_indices": (0, 1)},
        needs_img_size=True,
    ),
)
register_encoder(
    "swin_tiny",
    EncoderSpec(
        "swin_tiny_patch4_window7_224",
        kwargs={"window_size": 4},
        tiny_kwargs={"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)},
        needs_img_size=True,
    ),
)


class ImageEncoder(nn.Module):
    """A timm backbone in ``features_only`` mode, always returning NCHW maps.

    Attributes:
        channels: channels of each returned map, finest first.
        reductions: stride of each returned map relative to the input.
    """

    def __init__(self, name: str, in_chans: int, img_size: int, tiny: bool = False) -> None:
        """Build the encoder.

        Raises:
            KeyError: if ``name`` is not registered.
        """
        super().__init__()
        spec = _REGISTRY[name]
        kwargs = {**spec.kwargs, **(spec.tiny_kwargs if tiny else {})}
        if spec.needs_img_size:
            kwargs["img_size"] = img_size
        self.body = timm.create_model(
            spec.timm_name, pretrained=False, features_only=True, in_chans=in_chans, **kwargs
        )
        info: Any = self.body.feature_info
        self.channels: list[int] = list(info.channels())
        self.reductions: list[int] = list(info.reduction())
        self._channels_last = _detect_channels_last(self.body, in_chans, img_size, self.channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the feature maps, finest first, each (batch, channels, h, w)."""
        maps = self.body(x)
        if self._channels_last:
            maps = [m.permute(0, 3, 1, 2).contiguous() for m in maps]
        return list(maps)


def _detect_channels_last(
    body: nn.Module, in_chans: int, img_size: int, channels: list[int]
) -> bool:
    was_training = body.training
    body.eval()
    with torch.no_grad():
        probe = body(torch.zeros(1, in_chans, img_size, img_size))[-1]
    body.train(was_training)
    return bool(probe.shape[1] != channels[-1] and probe.shape[-1] == channels[-1])
