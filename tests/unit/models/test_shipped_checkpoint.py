"""The shipped checkpoint: loads with no text encoder, fits the contract, matches its model card."""

from __future__ import annotations

import re

import numpy as np
import pytest

from models.checkpoint import file_sha256
from models.inference import DEFAULT_CHECKPOINT, Predictor
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
