"""The BERT text encoder: tiny random model for behaviour, the packaged MiniLM once."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from models.checkpoint import file_sha256
from models.text_encoder import TextEncoder, default_text_model_dir

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def test_network_is_blocked_in_these_tests() -> None:
    with socket.socket() as sock, pytest.raises(AssertionError, match="network"):
        sock.connect(("127.0.0.1", 9))


def test_tiny_encoder_embeddings_are_unit_and_padding_invariant(
    tiny_text_encoder: TextEncoder,
) -> None:
    single = tiny_text_encoder.encode(["L4-L5 intervertebral disc"])
    batch = tiny_text_encoder.encode(["L4-L5 intervertebral disc", "a much longer prompt " * 5])
    assert single.shape == (1, 32)
    assert torch.allclose(single.norm(dim=-1), torch.ones(1), atol=1e-5)
    assert torch.allclose(single[0], batch[0], atol=1e-5)  # padding is masked out
    with pytest.raises(ValueError):
        tiny_text_encoder.encode([])


def test_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TextEncoder.from_directory(tmp_path / "absent")


def test_packaged_minilm_loads_offline_and_separates_levels() -> None:
    directory = default_text_model_dir()
    assert file_sha256(directory / "model.safetensors") == MINILM_SHA256
    encoder = TextEncoder.from_directory()
    assert encoder.dim == 384
    a, b, c = encoder.encode(
        ["L4/L5 intervertebral disc", "L5/S1 intervertebral disc", "a photo of a cat"]
    )
    assert float(a @ b) > 0.7 > float(a @ c)
