"""Where the shipped model files live (no torch import, so the node can check them cheaply)."""

from __future__ import annotations

from pathlib import Path

CHECKPOINT_DIR = Path(__file__).with_name("checkpoints")
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "lumbar_default.safetensors"
