"""Checkpoint format: safetensors weights plus JSON metadata (config, version, thresholds).

``.safetensors`` files are preferred (no pickle at all); ``.pt`` files are read with
``torch.load(weights_only=True)``. Either way the prompt embeddings travel as buffers, so a loaded
model needs no text encoder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file

from models.config import ModelConfig, config_hash, model_config_from_dict
from models.network import LumbarNet
from models.prompts import PromptBank

MODEL_NAME = "lumbar-textguided"


@dataclass
class CheckpointMeta:
    """Everything besides the weights.

    Attributes:
        config: the architecture.
        model_version: free-form version string.
        disc_values: disc label values, cranio-caudal (the level order of the abnormality head).
        level_names: disc level names in the same order.
        abnormality_keys: abnormality keys in head order.
        thresholds: per-abnormality probability thresholds for calls.
        model_name: name written into results.
        extra: free-form provenance (training command, data seeds).
    """

    config: ModelConfig
    model_version: str
    disc_values: tuple[int, ...]
    level_names: tuple[str, ...]
    abnormality_keys: tuple[str, ...]
    thresholds: dict[str, float]
    model_name: str = MODEL_NAME
    extra: dict[str, str] = field(default_factory=dict)

    def to_strings(self) -> dict[str, str]:
        """Flatten to the str -> str metadata safetensors stores."""
        raw = asdict(self)
        return {key: json.dumps(value) for key, value in raw.items()}

    @classmethod
    def from_strings(cls, raw: dict[str, str]) -> CheckpointMeta:
        """Inverse of :meth:`to_strings`.

        Raises:
            KeyError: if a field is missing.
            ValueError: if a value is not valid JSON or the config is invalid.
        """
        values = {key: json.loads(raw[key]) for key in raw if key in cls.__dataclass_fields__}
        values["config"] = model_config_from_dict(values["config"])
        for key in ("disc_values", "level_names", "abnormality_keys"):
            values[key] = tuple(values[key])
        return cls(**values)

    @property
    def config_hash(self) -> str:
        """Hash of the architecture config."""
        return config_hash(self.config)


def save_checkpoint(model: LumbarNet, meta: CheckpointMeta, path: str | Path) -> str:
    """Write weights and metadata; return the file's sha256.

    Raises:
        OSError: if the file cannot be written.
        ValueError: if the suffix is neither ``.safetensors`` nor ``.pt``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if target.suffix == ".safetensors":
        save_file(tensors, str(target), metadata=meta.to_strings())
    elif target.suffix == ".pt":
        torch.save({"state_dict": tensors, "meta": meta.to_strings()}, target)
    else:
        raise ValueError(f"unsupported checkpoint suffix {target.suffix!r}")
    return file_sha256(target)


def read_checkpoint(path: str | Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The raw metadata strings and tensors of a checkpoint (no pickle code execution).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the suffix is unsupported.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(source)
    if source.suffix == ".safetensors":
        with safe_open(str(source), framework="pt") as handle:
            strings = handle.metadata()
        return strings, load_file(str(source))
    if source.suffix == ".pt":
        payload = torch.load(source, map_location="cpu", weights_only=True)
        return payload["meta"], payload["state_dict"]
    raise ValueError(f"unsupported checkpoint suffix {source.suffix!r}")


def load_checkpoint(path: str | Path) -> tuple[LumbarNet, CheckpointMeta]:
    """Rebuild the network from a checkpoint.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the suffix is unsupported or the metadata is invalid.
        RuntimeError: if the weights do not fit the architecture.
    """
    strings, state = read_checkpoint(path)
    meta = CheckpointMeta.from_strings(strings)
    prompts = PromptBank(
        structures=state["structure_prompts"],
        abnormalities=state["abnormality_prompts"],
        normal=state["normal_prompts"],
    )
    model = LumbarNet(meta.config, prompts, meta.disc_values)
    model.load_state_dict(state)
    model.eval()
    return model, meta


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file.

    Raises:
        OSError: if the file cannot be read.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
