"""Projection heads into the shared image/text space (LumbarCLIP: linear or MLP)."""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """Linear projection, or the OpenAI-CLIP-tutorial MLP head (Linear-GELU-Linear, residual, LN).

    The output is not normalised; callers L2-normalise where a cosine is needed.
    """

    def __init__(
        self, in_dim: int, out_dim: int, kind: str = "linear", dropout: float = 0.1
    ) -> None:
        """Build the head.

        Raises:
            ValueError: if ``kind`` is not ``"linear"`` or ``"mlp"``.
        """
        super().__init__()
        if kind not in ("linear", "mlp"):
            raise ValueError(f"unknown projection kind {kind!r}")
        self.kind = kind
        self.proj = nn.Linear(in_dim, out_dim)
        if kind == "mlp":
            self.fc = nn.Linear(out_dim, out_dim)
            self.act = nn.GELU()
            self.drop = nn.Dropout(dropout)
            self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project the last dimension of ``x``."""
        projected = self.proj(x)
        if self.kind == "linear":
            return projected
        return self.norm(projected + self.drop(self.fc(self.act(projected))))
