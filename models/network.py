"""LumbarNet: image encoder, decoder, text-guided segmentation, level abnormalities, CLIP heads.

The text encoder is not part of the network: prompt embeddings are buffers (a
:class:`~models.prompts.PromptBank` computed once), and report embeddings are computed outside
and fed to :meth:`LumbarNet.encode_report`. So a checkpoint runs without a tokenizer.

The CLIP space pairs a report with its study's series embedding, which is built from the
study's level embeddings (each slice-pooled over its level's region) rather than from the whole
image: reports describe levels, and a global average of the image is the same for every study.
Reports have a projection of their own, apart from the one the structure and abnormality
prompts share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from torch import nn

from models.config import ModelConfig
from models.heads import ProjectionHead
from models.image_encoders import ImageEncoder
from models.prompts import PromptBank, ensemble, sample_variants
from models.segmentation import FPNDecoder, TextGuidedHead, UniversalHead, VisualHead
from models.slice_pooling import SlicePooling


@dataclass
class StudyOutput:
    """Network outputs for the sagittal stack of one study.

    Attributes:
        seg_logits: (S, 1 + C, H, W).
        level_logits: (L, K) abnormality logits per disc level (cranio-caudal order).
        level_valid: (L,) bool, levels whose region was found in the image.
        level_embeddings: (L, embed_dim) pooled level embeddings, L2-normalised.
        zero_shot: (L, K) prompt-only scores: cos(level, abnormality) - cos(level, normal).
    """

    seg_logits: torch.Tensor
    level_logits: torch.Tensor
    level_valid: torch.Tensor
    level_embeddings: torch.Tensor
    zero_shot: torch.Tensor


class LumbarNet(nn.Module):
    """The whole network; see the module docstring."""

    structure_prompts: torch.Tensor
    abnormality_prompts: torch.Tensor
    normal_prompts: torch.Tensor

    def __init__(
        self, config: ModelConfig, prompts: PromptBank, disc_values: tuple[int, ...]
    ) -> None:
        """Build the network.

        Args:
            config: the architecture.
            prompts: raw prompt embeddings; only their shapes matter when weights are loaded later.
            disc_values: label values of the disc levels, cranio-caudal.

        Raises:
            ValueError: on an unknown head kind or mismatched prompt shapes.
        """
        super().__init__()
        if prompts.structures.shape[0] != config.num_structures:
            raise ValueError("structure prompts do not match num_structures")
        self.config = config
        self.disc_values = disc_values
        e, c = config.embed_dim, config.decoder_channels
        self.register_buffer("structure_prompts", prompts.structures.clone())
        self.register_buffer("abnormality_prompts", prompts.abnormalities.clone())
        self.register_buffer("normal_prompts", prompts.normal.clone())
        self.encoder = ImageEncoder(
            config.image_encoder, config.in_chans, config.img_size, tiny=config.tiny
        )
        bottleneck = self.encoder.channels[-1]
        self.decoder = FPNDecoder(self.encoder.channels, config.in_chans, c)
        self.text_proj = ProjectionHead(config.text_dim, e, config.projection)
        self.prompt_offsets = (
            nn.Parameter(torch.zeros(config.num_structures, config.text_dim))
            if config.prompt_offsets
            else None
        )
        self.seg_head: nn.Module
        if config.seg_head == "text":
            self.seg_head = TextGuidedHead(c, e)
        elif config.seg_head == "universal":
            self.seg_head = UniversalHead(c, e, bottleneck)
        elif config.seg_head == "visual":
            self.seg_head = VisualHead(c, e, config.num_structures)
        else:
            raise ValueError(f"unknown seg_head {config.seg_head!r}")
        self.reconstruct_head = nn.Conv2d(c, config.in_chans, 1)
        # level abnormalities
        self.level_embed = nn.Linear(2 * c, e)
        self.level_pool = SlicePooling(e, config.pool_heads)
        self.level_proj = ProjectionHead(e, e, config.projection)
        num_abn = prompts.abnormalities.shape[0]
        self.abnormality_head = nn.Linear(e, num_abn)
        self.abnormality_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        # CLIP space: series embeddings from the level embeddings, reports with their own head
        self.series_proj = ProjectionHead(len(disc_values) * e, e, config.projection)
        self.report_proj = ProjectionHead(config.text_dim, e, config.projection)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    # ---- text side -------------------------------------------------------------------------
    def encode_text(self, raw: torch.Tensor) -> torch.Tensor:
        """Project raw prompt embeddings (..., text_dim) into the shared space, normalised."""
        return nnf.normalize(self.text_proj(raw), dim=-1)

    def encode_report(self, raw: torch.Tensor) -> torch.Tensor:
        """Project raw report embeddings (..., text_dim) into the CLIP space, normalised."""
        return nnf.normalize(self.report_proj(raw), dim=-1)

    def structure_queries(self, augment: bool = False) -> torch.Tensor:
        """Projected structure queries (C, embed_dim): a random variant each, or the ensemble."""
        raw = (
            sample_variants(self.structure_prompts, count=self.config.prompt_variants_per_query)
            if augment
            else ensemble(self.structure_prompts)
        )
        if self.config.center_prompts:
            raw = raw - ensemble(self.structure_prompts).mean(0)
        if self.prompt_offsets is not None:
            raw = raw + self.prompt_offsets
        return self.text_proj(raw)

    def abnormality_queries(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Ensembled, projected, normalised abnormality (K, e) and normal (e,) queries."""
        abnormal = self.encode_text(ensemble(self.abnormality_prompts))
        normal = self.encode_text(ensemble(self.normal_prompts.unsqueeze(0))).squeeze(0)
        return abnormal, normal

    # ---- image side ------------------------------------------------------------------------
    def segment(
        self, images: torch.Tensor, augment_prompts: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Segment (N, in_chans, H, W) slices.

        Returns:
            (logits (N, 1 + C, H, W), decoder features (N, c, H, W), bottleneck map).
        """
        maps = self.encoder(images)
        features = self.decoder(images, maps)
        logits = self.seg_head(features, self.structure_queries(augment_prompts), maps[-1])
        return logits, features, maps[-1]

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Masked-image-modelling reconstruction of (N, in_chans, H, W) inputs."""
        return self.reconstruct_head(self.decoder(images, self.encoder(images)))

    def encode_series(self, output: StudyOutput) -> torch.Tensor:
        """The study's series embedding (e,), normalised: its level embeddings (levels not found
        count as zeros), in cranio-caudal order, projected into the CLIP space."""
        levels = torch.where(
            output.level_valid.unsqueeze(-1),
            output.level_embeddings,
            torch.zeros_like(output.level_embeddings),
        )
        return nnf.normalize(self.series_proj(levels.flatten()), dim=-1)

    def forward_study(
        self,
        images: torch.Tensor,
        positions_mm: torch.Tensor,
        region_labels: torch.Tensor | None = None,
        augment_prompts: bool = False,
    ) -> StudyOutput:
        """Run one study's sagittal stack (S, in_chans, H, W).

        Args:
            images: the slices.
            positions_mm: (S,) slice positions along the slice normal.
            region_labels: (S, H, W) labels defining the level regions; None = the network's own
                segmentation.
            augment_prompts: sample prompt variants (training).

        Returns:
            The study outputs.
        """
        logits, features, _ = self.segment(images, augment_prompts)
        labels = logits.argmax(1) if region_labels is None else region_labels
        return self.levels(logits, features, labels, positions_mm)

    def levels(
        self,
        seg_logits: torch.Tensor,
        features: torch.Tensor,
        region_labels: torch.Tensor,
        positions_mm: torch.Tensor,
    ) -> StudyOutput:
        """Pool decoder features over each disc level's region and score the abnormalities.

        Per slice, the dilated disc region is mean- and max-pooled; slices are then combined by
        :class:`SlicePooling` (positions in mm), giving one embedding per level.

        Returns:
            The study outputs (``seg_logits`` passed through).
        """
        regions = self.level_regions(region_labels)  # (S, L, H/2, W/2)
        pooled = nnf.avg_pool2d(features, 2)
        weights = regions.to(pooled.dtype)
        area = weights.sum((2, 3))  # (S, L)
        mean = torch.einsum("slhw,schw->slc", weights, pooled) / area.clamp_min(1.0).unsqueeze(-1)
        maxed = torch.stack(
            [
                pooled.masked_fill(~regions[:, i, None], float("-inf")).amax((2, 3))
                for i in range(regions.shape[1])
            ],
            dim=1,
        )
        maxed = torch.where(area.unsqueeze(-1) > 0, maxed, torch.zeros_like(maxed))
        slice_level = self.level_embed(torch.cat([mean, maxed], -1))  # (S, L, e)
        valid = (area > 0).T  # (L, S)
        level = self.level_pool(
            slice_level.transpose(0, 1), positions_mm.expand(valid.shape[0], -1), valid
        )
        embedded = nnf.normalize(self.level_proj(level), dim=-1)
        abnormal, normal = self.abnormality_queries()
        similarity = embedded @ abnormal.T
        level_logits = self.abnormality_scale.exp() * similarity + self.abnormality_head(level)
        zero_shot = similarity - (embedded @ normal).unsqueeze(-1)
        return StudyOutput(seg_logits, level_logits, valid.any(1), embedded, zero_shot)

    def level_regions(self, labels: torch.Tensor) -> torch.Tensor:
        """Dilated disc regions at half resolution: (S, H, W) labels -> (S, L, H/2, W/2) bool."""
        values = torch.tensor(self.disc_values, device=labels.device)
        masks = (labels.unsqueeze(1) == values[None, :, None, None]).float()
        masks = nnf.max_pool2d(masks, 2)
        r = max(1, self.config.level_dilation_px // 2)
        return nnf.max_pool2d(masks, 2 * r + 1, stride=1, padding=r) > 0
