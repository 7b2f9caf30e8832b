"""The shipped checkpoint: loads with no text encoder, fits the contract, matches its model card."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from models.checkpoint import file_sha256
from models.data.phantom import phantom_to_sample
from models.inference import DEFAULT_CHECKPOINT, Predictor
from models.phantom import PhantomConfig, generate_study
from models.training.evaluate import phantom_samples, volumes_of

pytestmark = pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="no shipped checkpoint")


def test_model_card_records_the_checkpoint_sha256() -> None:
    card = (DEFAULT_CHECKPOINT.parent / "MODEL_CARD.md").read_text()
    recorded = re.search(r"sha256 \| `([0-9a-f]{64})`", card)
    assert recorded is not None and recorded.group(1) == file_sha256(DEFAULT_CHECKPOINT)
    assert DEFAULT_CHECKPOINT.stat().st_size < 20 * 1024 * 1024


def test_model_card_records_the_config_hash() -> None:
    """Jobs record the hash the card states: a new model-config field must not change it."""
    card = (DEFAULT_CHECKPOINT.parent / "MODEL_CARD.md").read_text()
    recorded = re.search(r"config hash \| `([0-9a-f]{16})`", card)
    assert recorded is not None
    assert recorded.group(1) == Predictor.load(device="cpu").meta.config_hash


def test_shipped_predictor_on_a_phantom_study() -> None:
    predictor = Predictor.load(device="cpu")
    (sample,) = phantom_samples([424242], "small")
    prediction = predictor.predict(volumes_of(sample))
    assert prediction.label_map.shape == sample.t2.shape
    assert prediction.model_name == "lumbar-textguided"
    assert prediction.checkpoint_sha256 == file_sha256(DEFAULT_CHECKPOINT)
    assert set(np.unique(prediction.label_map)) <= set(range(21))
    assert "S" in prediction.structures_found


def test_thread_count_and_warm_up_leave_the_prediction_unchanged() -> None:
    """The worker runs torch on one thread and warms the model up first: same results as two
    threads (labels, calls, measurements; probabilities to far below their reported 4 decimals)
    and as a model that was not warmed up (exactly)."""
    predictor = Predictor.load(device="cpu")
    (sample,) = phantom_samples([424242], "small")
    volumes = volumes_of(sample)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = predictor.predict(volumes)
        torch.set_num_threads(1)
        one = predictor.predict(volumes)
        predictor.warm_up()
        warmed = predictor.predict(volumes)
    finally:
        torch.set_num_threads(threads)
    for other in (two, warmed):
        assert np.array_equal(one.label_map, other.label_map)
        assert one.level_calls == other.level_calls
        assert one.measurements == other.measurements
        for level, scores in one.level_probabilities.items():
            assert scores == pytest.approx(other.level_probabilities[level], abs=1e-6)
    assert one.level_probabilities == warmed.level_probabilities


def test_shipped_predictor_asks_for_review_where_the_coverage_defeats_it() -> None:
    """Coverage ending 6-9 cm above the S1 endplate shows no sacrum and no L5: the level count
    cannot anchor, so every such study must say "low confidence: review"; studies of the
    training distribution must mostly pass."""
    predictor = Predictor.load(device="cpu")
    cut = replace(PhantomConfig.small(), sag_bottom_mm=(-90.0, -60.0))
    for seed in (424242, 424243):
        sample = phantom_to_sample(generate_study(seed, cut))
        quality = predictor.predict(volumes_of(sample)).quality
        assert quality.needs_review and quality.reasons
    passed = [
        not predictor.predict(volumes_of(sample)).quality.needs_review
        for sample in phantom_samples([424242, 424243, 424244], "small")
    ]
    assert sum(passed) >= 2
