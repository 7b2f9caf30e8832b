"""One optimiser step's loss for each training stage (mim, contrastive, supervised, slices)."""

from __future__ import annotations

import random

import torch
import torch.nn.functional as nnf

from models.config import StageConfig
from models.data.samples import ModelSample
from models.losses import (
    SoftClipLoss,
    abnormality_loss,
    masked_reconstruction_loss,
    segmentation_loss,
)
from models.network import LevelOutput, LumbarNet

MIM_PATCH = 16
MIM_RATIO = 0.6


def central_slices(count: int, max_slices: int) -> slice:
    """The central ``max_slices`` of ``count`` slices (all of them if fewer)."""
    if count <= max_slices:
        return slice(0, count)
    start = (count - max_slices) // 2
    return slice(start, start + max_slices)


def augment(images: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """Intensity augmentation per channel: gamma, contrast scale, Gaussian noise; kept in [0, 1]."""
    out = []
    for c in range(images.shape[1]):
        channel = images[:, c].clamp(0, 1) ** rng.uniform(0.7, 1.4)
        channel = channel * rng.uniform(0.85, 1.15) + torch.randn_like(channel) * rng.uniform(
            0, 0.03
        )
        out.append(channel.clamp(0, 1))
    return torch.stack(out, dim=1)


def supervised_loss(
    model: LumbarNet,
    batch: list[ModelSample],
    rng: random.Random,
    stage: StageConfig,
    pos_weight: torch.Tensor,
    abnormality_weight: float,
) -> dict[str, torch.Tensor]:
    """Segmentation (partial-label aware, unless the stage leaves it out) + abnormality loss over
    the batch's studies.

    Raises:
        ValueError: if a sample has no labels.
    """
    seg_total = torch.zeros((), device=batch[0].images.device)
    abn_total = torch.zeros((), device=batch[0].images.device)
    for sample in batch:
        if sample.labels is None:
            raise ValueError("supervised stage needs labelled samples")
        keep = central_slices(sample.images.shape[0], stage.max_slices)
        images = augment(sample.images[keep], rng)
        labels = sample.labels[keep]
        output: LevelOutput
        if stage.segmentation:
            output = model.forward_study(
                images, sample.positions_mm[keep], labels, augment_prompts=True
            )
            annotated = sample.annotated.unsqueeze(0).expand(images.shape[0], -1)
            seg_total = seg_total + segmentation_loss(output.seg_logits, labels, annotated)
        else:
            output = model.levels(images, labels, sample.positions_mm[keep])
        valid = sample.findings_valid & output.level_valid
        abn_total = abn_total + abnormality_loss(
            output.level_logits, sample.findings, valid, pos_weight
        )
    seg = seg_total / len(batch)
    abn = abn_total / len(batch)
    if not stage.segmentation:
        return {"loss": abnormality_weight * abn, "abn": abn}
    return {"loss": seg + abnormality_weight * abn, "seg": seg, "abn": abn}


def slices_loss(
    model: LumbarNet, batch: list[ModelSample], rng: random.Random, max_slices: int
) -> dict[str, torch.Tensor]:
    """Segmentation alone on ``max_slices`` slices drawn at random from each study, all of them
    segmented as one batch: every step sees several studies' anatomy, and BatchNorm statistics
    come from several studies rather than neighbouring slices of one.

    Raises:
        ValueError: if a sample has no labels.
    """
    images, labels, annotated = [], [], []
    for sample in batch:
        if sample.labels is None:
            raise ValueError("slices stage needs labelled samples")
        count = sample.images.shape[0]
        keep = sorted(rng.sample(range(count), min(count, max_slices)))
        images.append(augment(sample.images[keep], rng))
        labels.append(sample.labels[keep])
        annotated.append(sample.annotated.unsqueeze(0).expand(len(keep), -1))
    logits = model.segment(torch.cat(images), augment_prompts=True)
    loss = segmentation_loss(logits, torch.cat(labels), torch.cat(annotated))
    return {"loss": loss, "seg": loss}


def contrastive_loss(
    model: LumbarNet, batch: list[ModelSample], rng: random.Random, max_slices: int
) -> dict[str, torch.Tensor]:
    """Soft CLIP loss between series embeddings and report embeddings.

    A study's levels are located by its labels when it has them (no segmentation pass), else by
    the network's own segmentation.

    Raises:
        ValueError: if a sample has no report embedding or the batch has fewer than 2 studies.
    """
    if len(batch) < 2:
        raise ValueError("contrastive stage needs at least 2 studies per batch")
    series, reports = [], []
    for sample in batch:
        if sample.report_embedding is None:
            raise ValueError("contrastive stage needs report embeddings")
        keep = central_slices(sample.images.shape[0], max_slices)
        images, positions = augment(sample.images[keep], rng), sample.positions_mm[keep]
        output = (
            model.forward_study(images, positions)
            if sample.labels is None
            else model.levels(images, sample.labels[keep], positions)
        )
        series.append(model.encode_series(output))
        reports.append(sample.report_embedding)
    image = torch.stack(series).float()
    text = model.encode_report(torch.stack(reports)).float()
    findings = torch.stack([s.findings.flatten() for s in batch])
    scale = model.logit_scale.exp().clamp(max=100.0)
    loss = SoftClipLoss()(image, text, scale, findings)
    return {"loss": loss, "clip": loss}


def mim_loss(
    model: LumbarNet, batch: list[ModelSample], rng: random.Random, max_slices: int
) -> dict[str, torch.Tensor]:
    """Masked-image modelling: mask 60% of 16x16 patches, reconstruct them (dense FCMAE-like).

    Raises:
        Nothing.
    """
    images = torch.cat([s.images[central_slices(s.images.shape[0], max_slices)] for s in batch])
    n, _, h, w = images.shape
    generator = torch.Generator().manual_seed(rng.randrange(2**31))
    grid = torch.rand(n, 1, h // MIM_PATCH, w // MIM_PATCH, generator=generator) < MIM_RATIO
    mask = nnf.interpolate(grid.float(), size=(h, w), mode="nearest").to(images.device)
    reconstruction = model.reconstruct(images * (1 - mask))
    loss = masked_reconstruction_loss(reconstruction, images, mask)
    return {"loss": loss, "mim": loss}


def stage_loss(
    model: LumbarNet,
    stage: StageConfig,
    batch: list[ModelSample],
    rng: random.Random,
    pos_weight: torch.Tensor,
    abnormality_weight: float,
) -> dict[str, torch.Tensor]:
    """The loss of ``stage`` on ``batch``, under bfloat16 autocast when the stage asks for it."""
    device_type = next(model.parameters()).device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=stage.precision == "bf16"):
        if stage.name == "supervised":
            return supervised_loss(model, batch, rng, stage, pos_weight, abnormality_weight)
        if stage.name == "slices":
            return slices_loss(model, batch, rng, stage.max_slices)
        if stage.name == "contrastive":
            return contrastive_loss(model, batch, rng, stage.max_slices)
        return mim_loss(model, batch, rng, stage.max_slices)
