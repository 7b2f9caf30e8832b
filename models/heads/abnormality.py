"""The abnormality head: scores each disc level's embedding for the five abnormalities.

``logit_k = s * <e, q_k> + w_k . level + b_k``: a scaled cosine between the level's normalised
embedding ``e`` and the abnormality query ``q_k`` (the projected prompts, or learned vectors in
the visual-only ablation), plus a linear head on the raw level embedding. The zero-shot score is
the cosine to ``q_k`` minus the cosine to the "normal" query.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

ABNORMALITY_QUERIES = ("text", "visual")
"""Where the abnormality queries come from: the prompts, or learned vectors (the ablation)."""


@dataclass(frozen=True)
class AbnormalityScores:
    """Per-level scores: ``logits`` (L, K) and ``zero_shot`` (L, K)."""

    logits: torch.Tensor
    zero_shot: torch.Tensor


class AbnormalityHead(nn.Module):
    """Scaled cosine to the abnormality queries plus a linear head (see the module docstring)."""

    def __init__(self, embed_dim: int, num_abnormalities: int, queries: str = "text") -> None:
        """Build the head; ``queries="visual"`` adds the learned query vectors (the last one
        "normal").

        Raises:
            ValueError: if ``queries`` is not one of :data:`ABNORMALITY_QUERIES`.
        """
        super().__init__()
        if queries not in ABNORMALITY_QUERIES:
            raise ValueError(f"unknown abnormality_queries {queries!r}")
        self.linear = nn.Linear(embed_dim, num_abnormalities)
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.vectors = (
            nn.Parameter(torch.randn(num_abnormalities + 1, embed_dim) * 0.02)
            if queries == "visual"
            else None
        )

    def forward(
        self,
        level: torch.Tensor,
        embedded: torch.Tensor,
        abnormal: torch.Tensor,
        normal: torch.Tensor,
    ) -> AbnormalityScores:
        """Score levels.

        Args:
            level: (L, e) raw level embeddings.
            embedded: (L, e) their normalised projections.
            abnormal: (K, e) normalised abnormality queries.
            normal: (e,) the normalised "normal" query.

        Returns:
            The logits and zero-shot scores.
        """
        similarity = embedded @ abnormal.T
        logits = self.log_scale.exp() * similarity + self.linear(level)
        return AbnormalityScores(logits, similarity - (embedded @ normal).unsqueeze(-1))
