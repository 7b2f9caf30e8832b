"""LumbarNet: heads, level pooling, series embeddings, MIM, shapes and gradients."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from models.config import ModelConfig
from models.heads import ProjectionHead, seg_head_names
from models.losses import segmentation_loss
from models.network import LumbarNet
from models.prompts import PromptBank


@pytest.mark.parametrize("head", seg_head_names())
@pytest.mark.parametrize("projection", ["linear", "mlp"])
def test_forward_study_shapes_and_backward(
    tiny_bank: PromptBank,
    head: str,
    projection: str,
    tiny_config: Callable[..., ModelConfig],
    discs: tuple[int, ...],
    spine: Callable[..., np.ndarray],
) -> None:
    torch.manual_seed(0)
    net = LumbarNet(tiny_config(seg_head=head, projection=projection), tiny_bank, discs)
    labels = torch.from_numpy(spine(4, 64)).long()
    images = torch.rand(4, 2, 64, 64)
    out = net.forward_study(images, torch.arange(4.0) * 4, labels, augment_prompts=True)
    assert out.seg_logits.shape == (4, 21, 64, 64)
    assert out.level_logits.shape == (9, 5)
    assert out.level_valid.all()  # every disc of the toy spine is present
    loss = segmentation_loss(out.seg_logits, labels) + out.level_logits.square().mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert net.encoder.body.stem_0.weight.grad is not None  # type: ignore[union-attr]


def test_missing_levels_are_invalid(tiny_net: LumbarNet, discs: tuple[int, ...]) -> None:
    labels = torch.zeros(3, 64, 64, dtype=torch.long)
    labels[:, 10:12, 10:20] = 12  # only L4/L5
    out = tiny_net.forward_study(torch.rand(3, 2, 64, 64), torch.arange(3.0), labels)
    names_valid = [v for v, ok in zip(discs, out.level_valid.tolist(), strict=True) if ok]
    assert names_valid == [12]


def test_visual_head_ignores_text(
    tiny_bank: PromptBank, tiny_config: Callable[..., ModelConfig], discs: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    net = LumbarNet(tiny_config(seg_head="visual"), tiny_bank, discs).eval()
    images = torch.rand(1, 2, 64, 64)
    before = net.segment(images)
    net.structure_prompts.mul_(-1)
    assert torch.equal(before, net.segment(images))


def test_visual_abnormality_queries_ignore_the_prompts(
    tiny_bank: PromptBank,
    tiny_config: Callable[..., ModelConfig],
    discs: tuple[int, ...],
    spine: Callable[..., np.ndarray],
) -> None:
    torch.manual_seed(0)
    labels = torch.from_numpy(spine(3, 64)).long()
    images, positions = torch.rand(3, 2, 64, 64), torch.arange(3.0) * 4
    for queries, changes in (("text", True), ("visual", False)):
        net = LumbarNet(tiny_config(abnormality_queries=queries), tiny_bank, discs).eval()
        before = net.levels(images, labels, positions).level_logits
        net.abnormality_prompts.mul_(-1)
        after = net.levels(images, labels, positions).level_logits
        assert torch.allclose(before, after) != changes, queries
    with pytest.raises(ValueError, match="abnormality_queries"):
        LumbarNet(tiny_config(abnormality_queries="nope"), tiny_bank, discs)


def test_text_head_depends_on_prompts(tiny_net: LumbarNet) -> None:
    images = torch.rand(1, 2, 64, 64)
    before = tiny_net.segment(images)
    tiny_net.structure_prompts.mul_(-1)
    assert not torch.allclose(before, tiny_net.segment(images))


def test_series_embedding_comes_from_the_levels_found(
    tiny_net: LumbarNet, discs: tuple[int, ...]
) -> None:
    images = torch.rand(3, 2, 64, 64)
    labels = torch.zeros(3, 64, 64, dtype=torch.long)
    labels[:, 20:24, 20:40] = discs[-1]
    labels[:, 40:44, 20:40] = discs[-2]
    with torch.no_grad():
        output = tiny_net.forward_study(images, torch.arange(3.0) * 4, labels)
        series = tiny_net.encode_series(output)
        assert series.shape == (16,)
        assert torch.allclose(series.norm(), torch.tensor(1.0), atol=1e-5)
        # levels not found do not count, whatever their (meaningless) embedding is
        output.level_embeddings[~output.level_valid] = 7.0
        assert torch.allclose(tiny_net.encode_series(output), series)
        # a level that was found does
        output.level_embeddings[output.level_valid.nonzero()[0]] *= -1
        assert not torch.allclose(tiny_net.encode_series(output), series, atol=1e-3)
    assert tiny_net.reconstruct(images).shape == (3, 2, 64, 64)


def test_reports_have_their_own_projection(tiny_net: LumbarNet) -> None:
    raw = torch.randn(5, 32)
    report = tiny_net.encode_report(raw)
    assert torch.allclose(report.norm(dim=-1), torch.ones(5), atol=1e-5)
    queries = tiny_net.structure_queries()
    with torch.no_grad():
        tiny_net.report_proj.proj.weight.mul_(2).add_(1)
    assert not torch.allclose(tiny_net.encode_report(raw), report)
    assert torch.equal(tiny_net.structure_queries(), queries)


def test_prompt_offsets_and_bad_head(
    tiny_bank: PromptBank, tiny_config: Callable[..., ModelConfig], discs: tuple[int, ...]
) -> None:
    net = LumbarNet(tiny_config(prompt_offsets=True), tiny_bank, discs)
    assert net.prompt_offsets is not None and net.prompt_offsets.shape == (20, 32)
    with pytest.raises(ValueError):
        LumbarNet(tiny_config(seg_head="nope"), tiny_bank, discs)
    with pytest.raises(ValueError):
        LumbarNet(tiny_config(num_structures=19), tiny_bank, discs)


def test_projection_heads() -> None:
    assert ProjectionHead(8, 4)(torch.randn(3, 8)).shape == (3, 4)
    assert ProjectionHead(8, 4, "mlp")(torch.randn(3, 8)).shape == (3, 4)
    with pytest.raises(ValueError):
        ProjectionHead(8, 4, "deep")
