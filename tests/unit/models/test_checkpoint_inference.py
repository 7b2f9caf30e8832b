"""Checkpoint round trips, the Predictor contract, and a golden-tensor regression test.

Regenerate the golden files (only after an intended numerical change) with
``REGENERATE_GOLDEN=1 pytest tests/unit/models/test_checkpoint_inference.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from models.checkpoint import CheckpointMeta, file_sha256, load_checkpoint, save_checkpoint
from models.config import ModelConfig
from models.inference import Predictor, StudyPrediction, channel_argmax, resolve_device
from models.labels import load_label_scheme
from models.network import LumbarNet
from models.prompts import PromptBank
from models.volume import VolumeInput

DATA = Path(__file__).with_name("data")
GOLDEN_CHECKPOINT = DATA / "tiny_golden.safetensors"
GOLDEN_TENSORS = DATA / "tiny_golden_outputs.safetensors"
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def make_meta(config: ModelConfig, discs: tuple[int, ...]) -> CheckpointMeta:
    scheme = load_label_scheme()
    return CheckpointMeta(
        config=config,
        model_version="test",
        disc_values=discs,
        level_names=tuple(d.name for d in scheme.discs),
        abnormality_keys=tuple(a.key for a in scheme.abnormalities),
        thresholds={a.key: 0.5 for a in scheme.abnormalities},
    )


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_checkpoint_round_trip(
    tmp_path: Path,
    tiny_net: LumbarNet,
    tiny_config: Callable[..., ModelConfig],
    discs: tuple[int, ...],
    suffix: str,
) -> None:
    path = tmp_path / f"model{suffix}"
    sha = save_checkpoint(tiny_net, make_meta(tiny_config(), discs), path)
    assert sha == file_sha256(path)
    model, meta = load_checkpoint(path)
    assert meta.config == tiny_config() and meta.disc_values == discs
    for key, value in tiny_net.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    images = torch.rand(2, 2, 64, 64)
    assert torch.equal(model.segment(images), tiny_net.segment(images))


def test_bad_checkpoint_suffix(tmp_path: Path, tiny_net: LumbarNet) -> None:
    with pytest.raises(ValueError):
        save_checkpoint(
            tiny_net, make_meta(tiny_net.config, tiny_net.disc_values), tmp_path / "m.bin"
        )
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors")


def volume(labels: np.ndarray, seed: int = 0) -> VolumeInput:
    rng = np.random.default_rng(seed)
    pixels = (labels.astype(np.float32) * 37 % 200 + rng.random(labels.shape) * 20).astype(
        np.float32
    )
    return VolumeInput(pixels, (1.2, 1.2), np.arange(labels.shape[0]) * 4.0, SAGITTAL)


def banded_spine_logits(images: torch.Tensor, augment_prompts: bool = False) -> torch.Tensor:
    """Segmentation logits of a fixed lower spine (L4, L4/L5, L5, L5/S1, sacrum in horizontal
    bands) whatever the input: an untrained network may find no structure at all."""
    del augment_prompts
    n, _, h, w = images.shape
    logits = torch.zeros(n, 21, h, w)
    logits[:, 0] = 1.0
    row, columns = h // 2 - 12, slice(w // 3, 2 * w // 3)
    for value, height in ((3, 6), (12, 3), (2, 6), (11, 3), (1, 6)):
        logits[:, value, row : row + height, columns] = 5.0
        row += height
    return logits


def test_predictor_contract_and_determinism(
    tmp_path: Path,
    tiny_net: LumbarNet,
    discs: tuple[int, ...],
    spine: Callable[..., np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "m.safetensors"
    sha = save_checkpoint(tiny_net, make_meta(tiny_net.config, discs), path)
    predictor = Predictor.load(path, device="cpu")
    monkeypatch.setattr(predictor.model, "segment", banded_spine_logits)
    labels = spine(5, 90)[:, :, 5:75]  # not square, not the model size
    t2 = volume(labels)
    first = predictor.predict({"SAG_T2": t2, "SAG_T1": volume(labels, 1)})
    second = predictor.predict({"SAG_T2": t2, "SAG_T1": volume(labels, 1)})
    assert isinstance(first, StudyPrediction)
    assert first.label_map.shape == labels.shape and first.label_map.dtype == np.uint8
    assert np.array_equal(first.label_map, second.label_map)
    assert first.level_probabilities == second.level_probabilities
    assert first.reference_role == "SAG_T2" and first.checkpoint_sha256 == sha
    assert first.config_hash == make_meta(tiny_net.config, discs).config_hash
    for level, probabilities in first.level_probabilities.items():
        assert set(probabilities) == {a.key for a in load_label_scheme().abnormalities}
        assert all(0 <= p <= 1 for p in probabilities.values())
        assert set(first.level_calls[level]) == set(probabilities)
    names = {s.name for s in load_label_scheme().structures}
    assert set(first.structures_found) <= names
    t2_only, output = predictor.analyse({"SAG_T2": t2})
    assert t2_only.label_map.shape == labels.shape
    names = predictor.meta.level_names
    levels_found = {n for n, v in zip(names, output.level_valid, strict=True) if v}
    assert levels_found and levels_found == set(t2_only.level_probabilities)
    probabilities = torch.sigmoid(output.level_logits[output.level_valid]).flatten().tolist()
    reported = [p for level in t2_only.level_probabilities.values() for p in level.values()]
    assert probabilities == pytest.approx(reported)
    with pytest.raises(ValueError):
        predictor.predict({"SAG_T1": t2})


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError):
            resolve_device("cuda")


def golden_outputs(model: LumbarNet) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1234)
    images = torch.rand(2, 2, 64, 64, generator=generator)
    positions = torch.tensor([0.0, 4.0])
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[:, 20:24, 20:40] = 12
    labels[:, 30:34, 20:40] = 11
    with torch.no_grad():
        out = model.forward_study(images, positions, labels)
        series = model.encode_series(out)
    return {
        "seg_logits": out.seg_logits[:, :, ::8, ::8].contiguous(),
        "level_logits": out.level_logits,
        "series": series,
    }


def test_golden_tensors(
    tiny_bank: PromptBank, tiny_config: Callable[..., ModelConfig], discs: tuple[int, ...]
) -> None:
    if os.environ.get("REGENERATE_GOLDEN") == "1":
        torch.manual_seed(0)
        model = LumbarNet(tiny_config(), tiny_bank, discs).eval()
        save_checkpoint(model, make_meta(tiny_config(), discs), GOLDEN_CHECKPOINT)
        save_file(golden_outputs(model), str(GOLDEN_TENSORS))
    model, _ = load_checkpoint(GOLDEN_CHECKPOINT)
    expected = load_file(str(GOLDEN_TENSORS))
    actual = golden_outputs(model)
    for key, tensor in expected.items():
        assert torch.allclose(actual[key], tensor, atol=1e-4, rtol=1e-4), key


def test_channel_argmax_matches_torch_and_takes_the_first_of_tied_channels() -> None:
    logits = torch.randn(7, 33, 21, generator=torch.Generator().manual_seed(3))
    assert torch.equal(channel_argmax(logits), logits.argmax(0))
    tied = torch.zeros(4, 2, 2)
    tied[2, 0, 0] = tied[3, 0, 0] = 1.0
    assert channel_argmax(tied).tolist() == [[2, 0], [0, 0]]
