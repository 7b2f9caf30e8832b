"""RadCLIP-style slice pooling: V = MHSA(I + PE(P)) pooled by a learnable query.

Slice embeddings of one series (or one level's region) are combined with a sinusoidal encoding of
each slice's position in millimetres, mixed by self-attention, and pooled by attention from a
learnable query token. A key-padding mask handles variable slice counts.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def position_encoding(
    positions_mm: torch.Tensor, dim: int, max_period_mm: float = 512.0
) -> torch.Tensor:
    """Sinusoidal encoding of positions in mm: (..., S) -> (..., S, dim).

    Raises:
        ValueError: if ``dim`` is odd.
    """
    if dim % 2:
        raise ValueError("dim must be even")
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period_mm) * torch.arange(half, device=positions_mm.device) / half
    )
    angles = positions_mm.unsqueeze(-1).float() * freqs
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class SlicePooling(nn.Module):
    """Masked self-attention over slices plus query pooling."""

    def __init__(self, dim: int, heads: int = 4, layers: int = 1) -> None:
        """Build the pooling.

        Raises:
            ValueError: if ``dim`` is not divisible by ``heads``.
        """
        super().__init__()
        if dim % heads:
            raise ValueError("dim must be divisible by heads")
        self.dim = dim
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.attend = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, slices: torch.Tensor, positions_mm: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """Pool (B, S, dim) slice embeddings to (B, dim).

        Args:
            slices: slice embeddings.
            positions_mm: (B, S) slice positions along the slice normal, in mm.
            valid: (B, S) bool, False for padding slices. Rows with no valid slice give zeros.

        Returns:
            The pooled embeddings.
        """
        any_valid = valid.any(dim=1)
        safe_valid = valid.clone()
        safe_valid[~any_valid, 0] = True  # avoid all-masked softmax rows; zeroed below
        centred = positions_mm - _masked_mean(positions_mm, safe_valid)
        tokens = slices + position_encoding(centred, self.dim)
        tokens = self.encoder(tokens, src_key_padding_mask=~safe_valid)
        query = self.query.expand(slices.shape[0], -1, -1)
        pooled, _ = self.attend(query, tokens, tokens, key_padding_mask=~safe_valid)
        return self.norm(pooled.squeeze(1)) * any_valid.unsqueeze(-1).to(slices.dtype)


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    weights = valid.to(values.dtype)
    return (values * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp_min(1.0)
