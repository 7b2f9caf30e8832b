"""Class and abnormality prompts with PMC-MSA-style language augmentation.

Each structure gets prompt variants built from templates x modality x orientation x synonyms
(the region is always the lumbar spine). Training samples one variant per class and step; inference
uses the normalised mean of all variants (prompt ensembling). The variant embeddings are computed
once with the text encoder and stored in the checkpoint as a :class:`PromptBank`, so a node needs
no tokenizer to run.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf

from models.labels import LabelScheme, Structure
from models.text_encoder import TextEncoder

MODALITIES = ("T1-weighted MRI", "T2-weighted MRI")
ORIENTATIONS = ("sagittal",)
REGION = "lumbar spine"
TEMPLATES = (
    "A {modality} image in {orientation} view of the {region} showing the {organ}.",
    "{orientation} {modality} scan, {region}: {organ}",
    "This {modality} slice ({orientation}) of the {region} contains the {organ}.",
)
NORMAL_PROMPTS = ("normal intervertebral disc", "no abnormality", "healthy disc and endplates")

_ORDINALS = {
    "1": "first",
    "2": "second",
    "3": "third",
    "4": "fourth",
    "5": "fifth",
    "9": "ninth",
    "10": "tenth",
    "11": "eleventh",
    "12": "twelfth",
}
_REGIONS = {"L": "lumbar", "T": "thoracic"}

ABNORMALITY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "disc_bulge": ("broad-based disc bulge", "bulging intervertebral disc"),
    "disc_protrusion": ("focal disc protrusion", "protruded disc herniation"),
    "disc_extrusion": ("disc extrusion with migrated fragment", "extruded disc herniation"),
    "schmorl_node": ("Schmorl's node", "intravertebral disc herniation through the endplate"),
    "vertebral_degeneration": ("Modic endplate change", "degenerative vertebral marrow change"),
}


def structure_synonyms(structure: Structure) -> list[str]:
    """Names for one structure: the scheme's prompt plus generated synonyms.

    Raises:
        KeyError: if a level name has no ordinal word.
    """
    names = [structure.prompt]
    if structure.kind == "vertebra":
        if structure.name == "S":
            names += ["sacrum and first sacral segment", "S1 vertebra"]
        else:
            region, number = _REGIONS[structure.name[0]], structure.name[1:]
            names += [f"{structure.name} vertebral body", f"{_ORDINALS[number]} {region} vertebra"]
    elif structure.kind == "disc":
        upper, lower = structure.name.split("/")
        names += [f"{structure.name} disc", f"intervertebral disc between {upper} and {lower}"]
    else:
        names += ["thecal sac with cerebrospinal fluid"]
    return names


def augmented_prompts(organ_names: list[str]) -> list[str]:
    """All template x modality x orientation x synonym variants for one class.

    Raises:
        ValueError: if no names are given.
    """
    if not organ_names:
        raise ValueError("no names")
    return [
        t.format(modality=m, orientation=o, region=REGION, organ=n)
        for t, m, o, n in itertools.product(TEMPLATES, MODALITIES, ORIENTATIONS, organ_names)
    ]


def abnormality_prompts(key: str, scheme_prompt: str) -> list[str]:
    """Prompt variants for one abnormality (no templates: findings are sentences).

    Raises:
        KeyError: if the key has no synonyms.
    """
    names = [scheme_prompt, *ABNORMALITY_SYNONYMS[key]]
    return [f"{n}." for n in names] + [f"MRI of the lumbar spine showing {n}." for n in names]


@dataclass
class PromptBank:
    """Raw text-encoder embeddings of every prompt variant.

    Attributes:
        structures: (num_structures, variants, text_dim), row i = label value i + 1.
        abnormalities: (num_abnormalities, variants, text_dim).
        normal: (variants, text_dim) embeddings of "normal" prompts (zero-shot contrast).
    """

    structures: torch.Tensor
    abnormalities: torch.Tensor
    normal: torch.Tensor


def build_prompt_bank(encoder: TextEncoder, scheme: LabelScheme) -> PromptBank:
    """Embed all structure, abnormality and normal prompts.

    Raises:
        ValueError: if the scheme has no structures.
    """
    ordered = sorted(scheme.structures, key=lambda s: s.value)
    if not ordered:
        raise ValueError("empty label scheme")
    structure_texts = [augmented_prompts(structure_synonyms(s)) for s in ordered]
    abnormality_texts = [abnormality_prompts(a.key, a.prompt) for a in scheme.abnormalities]
    return PromptBank(
        structures=_embed_grid(encoder, structure_texts),
        abnormalities=_embed_grid(encoder, abnormality_texts),
        normal=encoder.encode(list(NORMAL_PROMPTS)),
    )


def ensemble(variants: torch.Tensor) -> torch.Tensor:
    """Prompt ensembling: L2-normalised mean over the variant axis (-2).

    Raises:
        Nothing.
    """
    return nnf.normalize(variants.mean(dim=-2), dim=-1)


def sample_variants(
    variants: torch.Tensor, generator: torch.Generator | None = None, count: int = 1
) -> torch.Tensor:
    """Language augmentation: per class, the mean of ``count`` random variants (with replacement).

    Args:
        variants: (classes, variants, dim) embeddings.
        generator: random source.
        count: variants averaged per class.

    Returns:
        (classes, dim) embeddings (not renormalised).

    Raises:
        ValueError: if ``count`` is below 1.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    classes, total, _ = variants.shape
    index = torch.randint(total, (classes, count), generator=generator, device=variants.device)
    rows = torch.arange(classes, device=variants.device)[:, None]
    return variants[rows, index].mean(1)


def _embed_grid(encoder: TextEncoder, texts: list[list[str]]) -> torch.Tensor:
    width = max(len(t) for t in texts)
    padded = [t + [t[i % len(t)] for i in range(width - len(t))] for t in texts]
    flat = encoder.encode([text for row in padded for text in row])
    return flat.view(len(texts), width, -1)
