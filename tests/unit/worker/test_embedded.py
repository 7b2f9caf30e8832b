"""Embedded worker start-up: the model checkpoint is checked before any thread starts."""

from __future__ import annotations

from pathlib import Path

import pytest

import worker.embedded
from pacs_node.config import Settings
from pacs_node.errors import StartupError


def test_missing_shipped_checkpoint_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "lumbar_default.safetensors"
    monkeypatch.setattr(worker.embedded, "DEFAULT_CHECKPOINT", missing)
    settings = Settings(database_url=f"sqlite:///{tmp_path}/node.db", spool_dir=tmp_path / "spool")
    with pytest.raises(StartupError, match=f"cannot read the model checkpoint {missing}"):
        worker.embedded.start(settings)
