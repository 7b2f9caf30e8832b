"""Losses: CLIP InfoNCE, soft CLIP, partial-label segmentation, weighted abnormality BCE.

The CLIP losses follow open_clip's split into ground truth, logits and ``forward``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as nnf
from torch import nn


class ClipLoss(nn.Module):
    """Symmetric InfoNCE over a batch of paired, L2-normalised image and text embeddings."""

    def get_ground_truth(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """One-hot targets (B, B): pair i matches only pair i."""
        del text
        return torch.eye(image.shape[0], device=image.device, dtype=image.dtype)

    def get_logits(
        self, image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image-to-text and text-to-image logits scaled by ``logit_scale`` (already exp'ed)."""
        logits_per_image = logit_scale * image @ text.T
        return logits_per_image, logits_per_image.T

    def forward(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        logit_scale: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean of the image->text and text->image cross-entropies; ``labels`` = soft targets."""
        targets = self.get_ground_truth(image, text) if labels is None else labels
        logits_image, logits_text = self.get_logits(image, text, logit_scale)
        loss_image = _soft_cross_entropy(logits_image, targets)
        loss_text = _soft_cross_entropy(logits_text, targets.T)
        return (loss_image + loss_text) / 2


class SoftClipLoss(ClipLoss):
    """CLIP loss with soft targets, so templated or identical reports are not false negatives.

    ``targets = softmax((w_intra * (I I^T + T T^T) / 2 + w_label * S_label) / target_temperature)``
    where ``S_label`` is the similarity of the pairs' finding vectors (see
    :func:`label_similarity`).
    """

    def __init__(
        self, intra_weight: float = 0.5, label_weight: float = 0.5, target_temperature: float = 0.1
    ) -> None:
        """Set the target mixture.

        Raises:
            ValueError: if the temperature is not positive.
        """
        super().__init__()
        if target_temperature <= 0:
            raise ValueError("target_temperature must be positive")
        self.intra_weight = intra_weight
        self.label_weight = label_weight
        self.target_temperature = target_temperature

    def soft_targets(
        self, image: torch.Tensor, text: torch.Tensor, findings: torch.Tensor | None
    ) -> torch.Tensor:
        """Row-stochastic (B, B) soft targets (no gradient)."""
        with torch.no_grad():
            similarity = self.intra_weight * (image @ image.T + text @ text.T) / 2
            if findings is not None:
                similarity = similarity + self.label_weight * label_similarity(findings)
            return nnf.softmax(similarity / self.target_temperature, dim=-1)

    def forward(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        logit_scale: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Soft CLIP loss; ``labels`` are (B, K) binary finding vectors, or None."""
        targets = self.soft_targets(image, text, labels)
        return super().forward(image, text, logit_scale, targets)


def label_similarity(findings: torch.Tensor) -> torch.Tensor:
    """Jaccard similarity of binary finding vectors (B, K); two empty vectors count as equal."""
    f = findings.float()
    intersection = f @ f.T
    union = f.sum(1, keepdim=True) + f.sum(1) - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1e-6), torch.ones_like(union))


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    annotated: torch.Tensor | None = None,
    dice_weight: float = 1.0,
) -> torch.Tensor:
    """Softmax cross-entropy + batch soft Dice, with partial-label support.

    The Dice term of a class sums over the whole batch and counts only the classes present in
    it, so a rare class (a vertebra cut by the edge of the field of view) weighs as much as a
    common one, and a class absent from a slice is not pushed towards zero there by the Dice
    term (cross-entropy takes care of false positives).

    Args:
        logits: (B, C + 1, H, W), channel 0 = background.
        target: (B, H, W) integer labels in 0..C.
        annotated: (B, C + 1) bool, which classes are annotated in each sample (background always
            True). For unannotated classes the marginal loss is used: their probability is merged
            with background, and they get no Dice term in that sample. None = fully annotated.
        dice_weight: weight of the Dice term.

    Returns:
        The scalar loss.
    """
    logits = logits.float()  # the loss is always computed in float32, also under autocast
    num_classes = logits.shape[1]
    if annotated is None:
        annotated = torch.ones(logits.shape[0], num_classes, dtype=torch.bool, device=logits.device)
    merged = ~annotated.clone()
    merged[:, 0] = True  # background absorbs every unannotated class
    log_probs = nnf.log_softmax(logits, dim=1)
    merged_map = merged[:, :, None, None].expand_as(log_probs)
    background = torch.logsumexp(log_probs.masked_fill(~merged_map, float("-inf")), dim=1)
    target_log_prob = log_probs.gather(1, target.unsqueeze(1)).squeeze(1)
    target_is_background = merged.gather(1, target.flatten(1)).view_as(target)
    ce = -torch.where(target_is_background, background, target_log_prob).mean()

    probs = log_probs.exp()
    one_hot = nnf.one_hot(target, num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    counted = annotated[:, 1:].to(probs.dtype)  # (B, C): samples where a class is annotated
    intersection = ((probs * one_hot).sum((2, 3))[:, 1:] * counted).sum(0)
    predicted = (probs.sum((2, 3))[:, 1:] * counted).sum(0)
    truth = (one_hot.sum((2, 3))[:, 1:] * counted).sum(0)
    present = truth > 0
    if not present.any():
        return ce
    dice = 2 * intersection[present] / (predicted[present] + truth[present])
    return ce + dice_weight * (1 - dice).mean()


def abnormality_loss(
    logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, pos_weight: torch.Tensor
) -> torch.Tensor:
    """BCE with per-class positive weights, averaged over valid (level, class) entries.

    Args:
        logits: (N, K) level x abnormality logits.
        targets: (N, K) 0/1 targets.
        valid: (N,) bool, levels present in the image.
        pos_weight: (K,) weight of positives (about (1 - p) / p).

    Returns:
        The scalar loss (0 when no level is valid).
    """
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return nnf.binary_cross_entropy_with_logits(
        logits[valid].float(), targets[valid].float(), pos_weight=pos_weight
    )


def masked_reconstruction_loss(
    prediction: torch.Tensor, image: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean squared error on masked pixels only (masked-image pretraining).

    Args:
        prediction: (B, C, H, W) reconstruction.
        image: (B, C, H, W) original input.
        mask: (B, 1, H, W) 1 where the input was masked.

    Returns:
        The scalar loss.
    """
    squared = ((prediction.float() - image) ** 2) * mask
    return squared.sum() / (mask.sum() * image.shape[1]).clamp_min(1.0)


def _soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets * nnf.log_softmax(logits, dim=-1)).sum(-1).mean()
