"""LumbarNet: image encoder, decoder, text-guided segmentation, level abnormalities, CLIP heads.

The text encoder is not part of the network: prompt embeddings are buffers (a
:class:`~models.prompts.PromptBank` computed once), and report embeddings are computed outside
and fed to :meth:`LumbarNet.encode_report`. So a checkpoint runs without a tokenizer.

The CLIP space pairs a report with its study's series embedding, which is built from the
study's level embeddings (each slice-pooled over its level's disc-aligned crops) rather than from
the whole image: reports describe levels, and a global average of the image is the same for every
study.
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
from models.heads import (
    AbnormalityHead,
    HeadDims,
    ProjectionHead,
    SegmentationInputs,
    create_seg_head,
)
from models.image_encoders import ImageEncoder
from models.level_crops import LevelCropEncoder
from models.prompts import PromptBank, ensemble, sample_variants
from models.segmentation import UNetDecoder
from models.slice_pooling import SlicePooling


@dataclass
class LevelOutput:
    """Abnormality outputs for the disc levels of one study.

    Attributes:
        level_logits: (L, K) abnormality logits per disc level (cranio-caudal order).
        level_valid: (L,) bool, levels whose disc was found in the image.
        level_embeddings: (L, embed_dim) pooled level embeddings, L2-normalised.
        zero_shot: (L, K) prompt-only scores: cos(level, abnormality) - cos(level, normal).
    """

    level_logits: torch.Tensor
    level_valid: torch.Tensor
    level_embeddings: torch.Tensor
    zero_shot: torch.Tensor


@dataclass
class StudyOutput(LevelOutput):
    """Network outputs for the sagittal stack of one study: the level outputs, plus
    ``seg_logits`` (S, 1 + C, H, W)."""

    seg_logits: torch.Tensor

    @classmethod
    def of(cls, levels: LevelOutput, seg_logits: torch.Tensor) -> StudyOutput:
        """The study outputs made of ``levels`` and the segmentation logits."""
        return cls(**vars(levels), seg_logits=seg_logits)


def masked_max(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Maximum of (B, S, D) ``values`` over the slots where (B, S) ``valid``; zeros for rows with
    no valid slot."""
    filled = values.masked_fill(~valid.unsqueeze(-1), float("-inf")).amax(1)
    return torch.where(valid.any(1, keepdim=True), filled, torch.zeros_like(filled))


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
        self.decoder = UNetDecoder(
            self.encoder.channels, self.encoder.reductions[0], config.in_chans, c
        )
        d = self.decoder.out_channels
        self.text_proj = ProjectionHead(config.text_dim, e, config.projection)
        self.prompt_offsets = (
            nn.Parameter(torch.zeros(config.num_structures, config.text_dim))
            if config.prompt_offsets
            else None
        )
        self.seg_head = create_seg_head(
            config.seg_head, HeadDims(d, e, bottleneck, config.num_structures)
        )
        self.reconstruct_head = nn.Conv2d(d, config.in_chans, 1)
        # level abnormalities
        self.level_crops = LevelCropEncoder(
            config.in_chans,
            config.level_crop_width,
            config.level_crop_rows,
            config.level_crop_cols,
            config.level_crop_slices,
        )
        self.level_embed = nn.Sequential(
            nn.Linear(self.level_crops.out_features, 2 * e), nn.GELU(), nn.Linear(2 * e, e)
        )
        self.level_pool = SlicePooling(e, config.pool_heads)
        self.level_pool_gate = nn.Parameter(torch.zeros(()))
        self.level_proj = ProjectionHead(e, e, config.projection)
        self.abnormality = AbnormalityHead(
            e, prompts.abnormalities.shape[0], config.abnormality_queries
        )
        # CLIP space: series embeddings from the level embeddings, reports with their own head
        self.series_proj = ProjectionHead(len(disc_values) * e, e, config.projection)
        self.report_proj = ProjectionHead(config.text_dim, e, config.projection)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.register_load_state_dict_pre_hook(_rename_old_keys)

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
        """Normalised abnormality (K, e) and normal (e,) queries: the ensembled, projected
        prompts, or learned vectors (the last one "normal") in the visual ablation."""
        if self.abnormality.vectors is not None:
            vectors = nnf.normalize(self.abnormality.vectors, dim=-1)
            return vectors[:-1], vectors[-1]
        abnormal = self.encode_text(ensemble(self.abnormality_prompts))
        normal = self.encode_text(ensemble(self.normal_prompts.unsqueeze(0))).squeeze(0)
        return abnormal, normal

    # ---- image side ------------------------------------------------------------------------
    def segment(self, images: torch.Tensor, augment_prompts: bool = False) -> torch.Tensor:
        """Segmentation logits (N, 1 + C, H, W) of (N, in_chans, H, W) slices."""
        maps = self.encoder(images)
        features = self.decoder(images, maps)
        queries = self.structure_queries(augment_prompts)
        return self.seg_head(SegmentationInputs(features, queries, maps[-1]))

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Masked-image-modelling reconstruction of (N, in_chans, H, W) inputs."""
        return self.reconstruct_head(self.decoder(images, self.encoder(images)))

    def encode_series(self, output: LevelOutput) -> torch.Tensor:
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
            region_labels: (S, H, W) labels locating the disc levels; None = the network's own
                segmentation.
            augment_prompts: sample prompt variants (training).

        Returns:
            The study outputs.
        """
        logits = self.segment(images, augment_prompts)
        labels = logits.argmax(1) if region_labels is None else region_labels
        levels = self.levels(images, labels, positions_mm)
        return StudyOutput.of(levels, logits)

    def levels(
        self, images: torch.Tensor, region_labels: torch.Tensor, positions_mm: torch.Tensor
    ) -> LevelOutput:
        """Score the abnormalities of each disc level.

        Each level's disc-aligned crops (:class:`~models.level_crops.LevelCropEncoder`) are
        combined in two ways: their maximum over the slices (a lesion may show on one slice
        only) embedded by an MLP, plus the same MLP's per-slice embeddings pooled by
        :class:`SlicePooling` (positions in mm) through a gate that starts at zero, so training
        starts from the maximum and brings in the attention as far as it helps. The level
        embedding is scored against the abnormality prompts plus a linear head.

        Args:
            images: (S, in_chans, H, W) slices.
            region_labels: (S, H, W) labels locating the discs.
            positions_mm: (S,) slice positions along the slice normal.

        Returns:
            The level outputs.
        """
        crops = self.level_crops(images, region_labels, self.disc_values)
        pooled = self.level_pool(
            self.level_embed(crops.features), positions_mm[crops.slice_index], crops.valid
        )
        strongest = self.level_embed(masked_max(crops.features, crops.valid))
        level = strongest + self.level_pool_gate * pooled
        embedded = nnf.normalize(self.level_proj(level), dim=-1)
        scores = self.abnormality(level, embedded, *self.abnormality_queries())
        return LevelOutput(scores.logits, crops.valid.any(1), embedded, scores.zero_shot)


RENAMED_KEYS = {
    "abnormality_head.weight": "abnormality.linear.weight",
    "abnormality_head.bias": "abnormality.linear.bias",
    "abnormality_scale": "abnormality.log_scale",
    "abnormality_vectors": "abnormality.vectors",
}
"""Parameters of checkpoints saved before the abnormality head was a module of its own."""


def _rename_old_keys(
    module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, *_: object
) -> None:
    """Load a checkpoint saved under the old parameter names (the shipped ones are)."""
    for old, new in RENAMED_KEYS.items():
        if prefix + old in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)
