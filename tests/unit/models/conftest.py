"""Fixtures for the model tests: no network, a tiny random BERT, tiny model configs."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from models.config import ModelConfig
from models.labels import load_label_scheme
from models.network import LumbarNet
from models.prompts import PromptBank, build_prompt_bank
from models.text_encoder import TextEncoder, default_text_model_dir


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any test that opens a network connection."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield


@pytest.fixture(scope="session")
def tiny_text_encoder() -> TextEncoder:
    """A 2-layer randomly initialised BERT (hidden 32) with the MiniLM tokenizer."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    tokenizer = AutoTokenizer.from_pretrained(str(default_text_model_dir()), local_files_only=True)
    return TextEncoder(BertModel(config).eval(), tokenizer)


@pytest.fixture(scope="session")
def tiny_bank(tiny_text_encoder: TextEncoder) -> PromptBank:
    """Prompt embeddings from the tiny BERT."""
    return build_prompt_bank(tiny_text_encoder, load_label_scheme())


def make_tiny_config(**overrides: object) -> ModelConfig:
    """A tiny, fast architecture (64 px, tiny ConvNeXt V2)."""
    values: dict[str, object] = {
        "tiny": True,
        "img_size": 64,
        "decoder_channels": 16,
        "embed_dim": 16,
        "text_dim": 32,
        "pool_heads": 2,
        "level_crop_rows": 8,
        "level_crop_cols": 12,
        "level_crop_slices": 2,
        "level_crop_width": 4,
    }
    values.update(overrides)
    return ModelConfig(**values)  # type: ignore[arg-type]


def disc_label_values() -> tuple[int, ...]:
    """Disc label values, cranio-caudal."""
    return tuple(d.value for d in load_label_scheme().discs)


@pytest.fixture
def tiny_net(tiny_bank: PromptBank) -> LumbarNet:
    """A tiny randomly initialised network."""
    torch.manual_seed(0)
    return LumbarNet(make_tiny_config(), tiny_bank, disc_label_values()).eval()


@pytest.fixture
def tiny_config() -> Callable[..., ModelConfig]:
    """Factory of tiny configs (keyword overrides)."""
    return make_tiny_config


@pytest.fixture
def discs() -> tuple[int, ...]:
    """Disc label values, cranio-caudal."""
    return disc_label_values()


@pytest.fixture
def spine() -> Callable[..., np.ndarray]:
    """Factory of toy label volumes, see :func:`synthetic_spine`."""
    return synthetic_spine


def synthetic_spine(slices: int = 5, size: int = 64, seed: int = 0) -> np.ndarray:
    """A toy (slices, size, size) label volume: a vertical stack of vertebrae and discs."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((slices, size, size), dtype=np.uint8)
    order = [10, 19, 9, 18, 8, 17, 7, 16, 6, 15, 5, 14, 4, 13, 3, 12, 2, 11, 1]  # T9 .. S
    row = 2 + int(rng.integers(0, 2))
    for value in order:
        height = 4 if value <= 10 else 2
        if row + height > size - 1:
            break
        labels[1 : slices - 1, row : row + height, size // 3 : size // 3 + 14] = value
        row += height
    return labels
