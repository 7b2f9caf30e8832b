"""Prompt augmentation, ensembling and the prompt bank."""

from __future__ import annotations

import pytest
import torch

from models.labels import load_label_scheme
from models.prompts import (
    MODALITIES,
    TEMPLATES,
    PromptBank,
    augmented_prompts,
    ensemble,
    sample_variants,
    structure_synonyms,
)


def test_synonyms_cover_levels_and_kinds() -> None:
    scheme = load_label_scheme()
    assert "fourth lumbar vertebra" in structure_synonyms(scheme.by_name("L4"))
    disc = structure_synonyms(scheme.by_name("L4/L5"))
    assert "intervertebral disc between L4 and L5" in disc
    assert structure_synonyms(scheme.by_name("S"))[0] == "sacrum"


def test_augmented_prompts_mention_modality_orientation_and_region() -> None:
    prompts = augmented_prompts(["L4 vertebral body", "fourth lumbar vertebra"])
    assert len(prompts) == len(TEMPLATES) * len(MODALITIES) * 2
    assert all("sagittal" in p and "lumbar spine" in p for p in prompts)
    assert any("T1-weighted" in p for p in prompts) and any("T2-weighted" in p for p in prompts)


def test_ensemble_is_unit_norm_mean_and_sampling_picks_rows() -> None:
    variants = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [2.0, 0.0]]])
    ens = ensemble(variants)
    assert torch.allclose(ens, torch.tensor([[0.7071068, 0.7071068], [1.0, 0.0]]))
    picked = sample_variants(variants, torch.Generator().manual_seed(1))
    for row, options in zip(picked, variants, strict=True):
        assert any(torch.equal(row, o) for o in options)


def test_prompt_bank_shapes(tiny_bank: PromptBank) -> None:
    scheme = load_label_scheme()
    assert tiny_bank.structures.shape[:1] == (len(scheme.structures),)
    assert tiny_bank.abnormalities.shape[0] == len(scheme.abnormalities)
    assert tiny_bank.structures.shape[-1] == tiny_bank.normal.shape[-1] == 32
    norms = tiny_bank.structures.norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_sampling_several_variants_averages_them() -> None:
    variants = torch.tensor([[[1.0, 0.0], [3.0, 0.0]]])
    mean = sample_variants(variants, torch.Generator().manual_seed(0), count=4)
    assert mean.shape == (1, 2) and 1.0 <= float(mean[0, 0]) <= 3.0 and float(mean[0, 1]) == 0
    with pytest.raises(ValueError):
        sample_variants(variants, count=0)
