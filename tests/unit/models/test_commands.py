"""``pacs-node train`` and ``pacs-node evaluate`` end to end on two phantom studies (tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.checkpoint import load_checkpoint
from worker.commands import evaluate as evaluate_command
from worker.commands import train as train_command

TINY = {
    "model": {
        "tiny": True,
        "img_size": 64,
        "decoder_channels": 16,
        "embed_dim": 16,
        "pool_heads": 2,
        "level_crop_rows": 8,
        "level_crop_cols": 12,
        "level_crop_slices": 2,
        "level_crop_width": 4,
    },
    "stages": [
        {"name": "mim", "steps": 1, "batch_studies": 2, "max_slices": 2},
        {"name": "contrastive", "steps": 2, "batch_studies": 2, "max_slices": 2},
        {"name": "supervised", "steps": 3, "batch_studies": 1, "max_slices": 3},
    ],
    "train_seeds": [11, 13],
    "val_seeds": [21, 22],
    "log_every": 1,
    "checkpoint_every": 2,
}


def test_train_resume_and_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "run"
    common = ["--config", str(config), "--out", str(out), "--cache", str(tmp_path / "cache")]
    assert train_command.main([*common, "--quiet", "--threads", "1"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert [int(p["stage"]) for p in history] == [0, 1, 1, 2, 2, 2]
    assert (out / "curves.png").stat().st_size > 0
    _, meta = load_checkpoint(out / "model.safetensors")
    assert set(meta.thresholds) == set(meta.abnormality_keys)
    assert "pacs-node train" in meta.extra["command"]
    # resuming a finished run only re-tunes and re-saves
    assert train_command.main([*common, "--quiet", "--resume", "--threads", "1"]) == 0
    assert json.loads((out / "history.json").read_text()) == history

    metrics = tmp_path / "metrics.json"
    argv = ["--checkpoint", f"tiny={out / 'model.safetensors'}", "--seeds", "31:32"]
    assert evaluate_command.main([*argv, "--json", str(metrics), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "mIoU (19 structures)" in printed and "retrieval R@1" in printed
    assert "  chance R@1" in printed and "  all-absent baseline" in printed
    assert "disc_bulge ECE" in printed and "flagged among failed" in printed
    result = json.loads(metrics.read_text())["tiny"]
    assert 0 <= result["miou"] <= 1 and result["studies"] == 1
    assert set(result["abnormalities"]) >= {"all", "disc_bulge"}
    assert result["retrieval_chance"] == {"R@1": 1.0, "R@5": 1.0}
    assert result["quality"]["studies"] == 1 and len(result["per_study"]) == 1


def test_fine_tuning_the_abnormality_path_from_a_checkpoint(tmp_path: Path) -> None:
    """``--init`` starts from a checkpoint; a stage without segmentation leaves it untouched."""
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY, "stages": TINY["stages"][2:]}))
    cache = ["--cache", str(tmp_path / "cache"), "--quiet", "--threads", "1"]
    assert train_command.main(["--config", str(config), "--out", str(tmp_path / "a"), *cache]) == 0
    levels_only = {
        "name": "supervised",
        "steps": 3,
        "max_slices": 3,
        "segmentation": False,
        "trainable": ["level_crops", "level_embed", "abnormality"],
    }
    config.write_text(json.dumps({**TINY, "stages": [levels_only]}))
    base = tmp_path / "a" / "model.safetensors"
    argv = ["--config", str(config), "--out", str(tmp_path / "b"), "--init", str(base), *cache]
    assert train_command.main(argv) == 0
    before = load_checkpoint(base)[0].state_dict()
    after = load_checkpoint(tmp_path / "b" / "model.safetensors")[0].state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(tuple(levels_only["trainable"])) for k in changed)
    history = json.loads((tmp_path / "b" / "history.json").read_text())
    assert history and all("seg" not in point for point in history)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_train_on_cuda(tmp_path: Path) -> None:
    config = tmp_path / "tiny.json"
    bf16 = [{**stage, "precision": "bf16"} for stage in TINY["stages"]]  # type: ignore[attr-defined]
    config.write_text(json.dumps({**TINY, "stages": bf16}))
    out = tmp_path / "run"
    argv = ["--config", str(config), "--out", str(out), "--cache", str(tmp_path / "cache")]
    assert train_command.main([*argv, "--quiet", "--device", "cuda", "--workers", "2"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert [int(p["stage"]) for p in history] == [0, 1, 1, 2, 2, 2]
    assert all(torch.isfinite(torch.tensor(p["loss"])) for p in history)
    model, _ = load_checkpoint(out / "model.safetensors")
    assert next(model.parameters()).device.type == "cpu"
