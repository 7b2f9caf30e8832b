"""Training: a short run must reduce the loss; stage steps, schedule and config parsing."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.config import (
    ModelConfig,
    StageConfig,
    config_hash,
    load_train_config,
    train_config_from_dict,
)
from models.data.samples import ModelSample, load_model_sample, save_model_sample
from models.network import LumbarNet
from models.prompts import PromptBank
from models.training.cache import build_cache, load_cache, positive_weights
from models.training.steps import central_slices, contrastive_loss, mim_loss, stage_loss
from models.training.trainer import (
    hold_frozen_statistics,
    learning_rate,
    plot_history,
    select_trainable,
    stage_pool,
    transfer_weights,
)


def toy_sample(spine: Callable[..., np.ndarray], seed: int) -> ModelSample:
    labels = torch.from_numpy(spine(4, 64, seed)).long()
    rng = torch.Generator().manual_seed(seed)
    images = (labels.float() / 20)[:, None].repeat(1, 2, 1, 1) + 0.05 * torch.rand(
        4, 2, 64, 64, generator=rng
    )
    findings = torch.zeros(9, 5)
    findings[seed % 9, seed % 5] = 1
    return ModelSample(
        images=images.clamp(0, 1),
        labels=labels,
        annotated=torch.ones(21, dtype=torch.bool),
        positions_mm=torch.arange(4.0) * 4,
        findings=findings,
        findings_valid=torch.ones(9, dtype=torch.bool),
        report_embedding=torch.randn(32, generator=rng),
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_short_supervised_run_reduces_loss(
    precision: str,
    tiny_bank: PromptBank,
    tiny_config: Callable[..., ModelConfig],
    discs: tuple[int, ...],
    spine: Callable[..., np.ndarray],
) -> None:
    torch.manual_seed(0)
    model = LumbarNet(tiny_config(), tiny_bank, discs).train()
    stage = StageConfig(name="supervised", steps=25, max_slices=4, precision=precision)
    forward_dtypes: list[torch.dtype] = []
    model.decoder.register_forward_hook(lambda _m, _i, out: forward_dtypes.append(out.dtype))
    samples = [toy_sample(spine, s) for s in range(3)]
    weights = positive_weights(samples)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    losses = []
    for step in range(stage.steps):
        loss = stage_loss(model, stage, [samples[step % 3]], random.Random(step), weights, 1.0)
        optimizer.zero_grad()
        loss["loss"].backward()
        optimizer.step()
        assert loss["loss"].dtype == torch.float32
        assert all(p.dtype == torch.float32 for p in model.parameters())
        losses.append(loss["loss"].detach().item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert set(forward_dtypes) == {torch.bfloat16 if precision == "bf16" else torch.float32}


def test_contrastive_and_mim_steps_give_finite_gradients(
    tiny_net: LumbarNet, spine: Callable[..., np.ndarray]
) -> None:
    samples = [toy_sample(spine, s) for s in range(3)]
    tiny_net.train()
    for loss in (
        contrastive_loss(tiny_net, samples, random.Random(0), 3)["loss"],
        mim_loss(tiny_net, samples[:2], random.Random(0), 2)["loss"],
    ):
        tiny_net.zero_grad()
        loss.backward()
        assert torch.isfinite(loss)
    with pytest.raises(ValueError):
        contrastive_loss(tiny_net, samples[:1], random.Random(0), 3)


def test_a_stage_trains_only_the_parameters_it_names(
    tiny_net: LumbarNet, spine: Callable[..., np.ndarray]
) -> None:
    samples = [toy_sample(spine, s) for s in range(3)]
    heads = ("series_proj", "report_proj", "logit_scale")
    trainable = select_trainable(tiny_net, heads)
    names = {n for n, p in tiny_net.named_parameters() if p.requires_grad}
    assert names and all(n.startswith(heads) for n in names)
    assert len(trainable) == len(names)
    before = {n: p.detach().clone() for n, p in tiny_net.named_parameters()}
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    contrastive_loss(tiny_net, samples, random.Random(0), 3)["loss"].backward()
    optimizer.step()
    for name, parameter in tiny_net.named_parameters():
        assert torch.equal(parameter, before[name]) != name.startswith(heads), name
    assert len(select_trainable(tiny_net, ())) == len(before)
    with pytest.raises(ValueError, match="no parameters named"):
        select_trainable(tiny_net, ("nope",))


def test_a_stage_without_segmentation_only_scores_levels(
    tiny_net: LumbarNet, spine: Callable[..., np.ndarray]
) -> None:
    stage = StageConfig(name="supervised", steps=1, segmentation=False)
    samples = [toy_sample(spine, s) for s in range(2)]
    calls: list[object] = []
    tiny_net.decoder.register_forward_hook(lambda *_: calls.append(None))
    loss = stage_loss(tiny_net.train(), stage, samples, random.Random(0), torch.ones(5), 1.0)
    assert set(loss) == {"loss", "abn"} and torch.isfinite(loss["loss"])
    loss["loss"].backward()
    assert not calls  # no segmentation pass
    assert tiny_net.level_crops.cnn[0][0].weight.grad is not None
    with pytest.raises(ValueError, match="only a supervised stage"):
        train_config_from_dict(
            {"stages": [{"name": "contrastive", "steps": 1, "segmentation": False}]}
        )


def test_a_slices_stage_segments_random_slices_of_every_study_in_one_batch(
    tiny_net: LumbarNet, spine: Callable[..., np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = StageConfig(name="slices", steps=1, batch_studies=3, max_slices=2)
    samples = [toy_sample(spine, s) for s in range(3)]
    inputs: list[torch.Tensor] = []
    tiny_net.decoder.register_forward_hook(lambda _m, args, _out: inputs.append(args[0]))
    loss = stage_loss(tiny_net.train(), stage, samples, random.Random(0), torch.ones(5), 1.0)
    assert set(loss) == {"loss", "seg"} and torch.isfinite(loss["loss"])
    assert [len(i) for i in inputs] == [6]  # 2 slices of each of the 3 studies, one pass
    loss["loss"].backward()
    assert tiny_net.level_crops.cnn[0][0].weight.grad is None  # no abnormality path

    monkeypatch.setattr("models.training.steps.augment", lambda images, _rng: images)
    one = replace(stage, batch_studies=1, max_slices=1)
    drawn = set()
    for seed in range(12):
        inputs.clear()
        stage_loss(tiny_net, one, samples[:1], random.Random(seed), torch.ones(5), 1.0)
        drawn |= {i for i in range(4) if torch.equal(inputs[0][0], samples[0].images[i])}
    assert len(drawn) > 2  # drawn at random, not always the central slices

    assert train_config_from_dict({"stages": [{"name": "slices", "steps": 1}]}).stages[0] == (
        StageConfig(name="slices", steps=1)
    )
    unlabelled = toy_sample(spine, 3)
    unlabelled.labels = None
    with pytest.raises(ValueError, match="labelled"):
        stage_loss(tiny_net, stage, [unlabelled], random.Random(0), torch.ones(5), 1.0)


def test_transfer_weights_loads_what_fits(
    tiny_net: LumbarNet,
    tiny_bank: PromptBank,
    tiny_config: Callable[..., ModelConfig],
    discs: tuple[int, ...],
) -> None:
    wider = LumbarNet(tiny_config(level_crop_width=6), tiny_bank, discs)
    fresh = transfer_weights(wider, tiny_net.state_dict())
    assert fresh and all(n.startswith(("level_crops.", "level_embed.")) for n in fresh)
    assert torch.equal(
        wider.encoder.state_dict()["body.stem_0.weight"],
        tiny_net.encoder.state_dict()["body.stem_0.weight"],
    )
    with pytest.raises(ValueError, match="no tensor"):
        transfer_weights(wider, {"nope": torch.zeros(1)})


def test_sample_cache_round_trip(tmp_path: Path, spine: Callable[..., np.ndarray]) -> None:
    sample = toy_sample(spine, 1)
    save_model_sample(sample, tmp_path / "s.npz")
    back = load_model_sample(tmp_path / "s.npz")
    assert back.labels is not None and sample.labels is not None
    assert torch.equal(back.labels, sample.labels)
    assert torch.allclose(back.images, sample.images, atol=1e-3)
    assert back.report_embedding is not None
    assert torch.equal(back.findings, sample.findings)


def test_phantom_cache_built_in_worker_processes_matches_one_built_here(tmp_path: Path) -> None:
    seeds = range(11, 14)
    model = ModelConfig(img_size=64)
    here = load_cache(build_cache(seeds, tmp_path / "a", "small", model, None, False))
    paths = build_cache(seeds, tmp_path / "b", "small", model, None, False, workers=2)
    assert [p.name for p in paths] == ["11.npz", "12.npz", "13.npz"]
    for ours, theirs in zip(here, load_cache(paths), strict=True):
        assert ours.labels is not None and theirs.labels is not None
        assert torch.equal(ours.images, theirs.images)
        assert torch.equal(ours.labels, theirs.labels)
        assert torch.equal(ours.findings, theirs.findings)
    assert not torch.equal(here[0].images[0], here[1].images[0])


def test_schedule_central_slices_and_plot(tmp_path: Path) -> None:
    stage = StageConfig(name="supervised", steps=100, lr=1.0)
    assert learning_rate(stage, 0) == pytest.approx(0.2)
    assert learning_rate(stage, 5) == pytest.approx(1.0)
    assert learning_rate(stage, 99) < 0.06
    assert central_slices(10, 4) == slice(3, 7) and central_slices(3, 4) == slice(0, 3)
    plot_history(
        [{"stage": 0.0, "step": 1.0, "loss": 2.0}, {"stage": 1.0, "step": 1.0, "loss": 1.0}],
        tmp_path / "c.png",
    )
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_configs_parse_and_reject_unknown_keys(tmp_path: Path) -> None:
    default = load_train_config("default")
    visual = load_train_config("visual_only")
    assert default.model.seg_head == "text" and visual.model.seg_head == "visual"
    assert default.stages == visual.stages
    assert set(range(*default.train_seeds)).isdisjoint(range(*default.val_seeds))
    assert config_hash(default.model) != config_hash(visual.model)
    crops, crops_visual = (
        load_train_config("level_crops"),
        load_train_config("level_crops_visual_only"),
    )
    assert crops.model == default.model  # fine-tunes a default run (--init)
    assert crops_visual.model.abnormality_queries == "visual"
    assert crops.stages == crops_visual.stages  # the query vectors are the head's own
    with pytest.raises(ValueError):
        train_config_from_dict({"model": {"nope": 1}})
    with pytest.raises(ValueError):
        train_config_from_dict({"stages": [{"name": "dance", "steps": 1}]})
    with pytest.raises(ValueError, match="precision"):
        train_config_from_dict({"stages": [{"name": "mim", "steps": 1, "precision": "fp8"}]})
    stage = {"name": "contrastive", "steps": 1, "trainable": ["series_proj"]}
    assert train_config_from_dict({"stages": [stage]}).stages[0].trainable == ("series_proj",)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"seed": 3}))
    assert load_train_config(path).seed == 3


def test_stage_pools_follow_what_samples_carry(spine: Callable[..., np.ndarray]) -> None:
    labelled = toy_sample(spine, 0)
    report_only = toy_sample(spine, 1)
    report_only.labels = None
    plain = toy_sample(spine, 2)
    plain.labels, plain.report_embedding = None, None
    samples = [labelled, report_only, plain]
    assert stage_pool("supervised", samples) == stage_pool("slices", samples) == [labelled]
    assert stage_pool("contrastive", samples) == [labelled, report_only]
    assert stage_pool("mim", samples) == samples
    with pytest.raises(ValueError):
        stage_pool("supervised", [plain])


def test_frozen_batchnorm_statistics_stay_as_they_were(
    tiny_net: LumbarNet, spine: Callable[..., np.ndarray]
) -> None:
    """A stage training the segmentation leaves the level CNN's running statistics alone."""
    stage = StageConfig(name="supervised", steps=1, trainable=("encoder", "decoder", "seg_head"))
    samples = [toy_sample(spine, s) for s in range(2)]
    tiny_net.train()
    select_trainable(tiny_net, stage.trainable)
    hold_frozen_statistics(tiny_net)
    level_norm = tiny_net.level_crops.cnn[0][1]
    decoder_norm = tiny_net.decoder.fine[0][1]
    assert isinstance(level_norm, torch.nn.BatchNorm2d)
    level_before = level_norm.running_mean.clone()
    decoder_before = decoder_norm.running_mean.clone()
    stage_loss(tiny_net, stage, samples, random.Random(0), torch.ones(5), 1.0)["loss"].backward()
    assert torch.equal(level_norm.running_mean, level_before)
    assert not torch.equal(decoder_norm.running_mean, decoder_before)
