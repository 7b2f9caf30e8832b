"""The label scheme as data: the 19 spinal structures (plus the canal) and the 5 abnormalities.

The list lives in ``data/labels.json`` so a site can change it without touching code. Values follow
the MRSpineSeg scheme (1 = sacrum ... 10 = T9, 11 = L5/S1 ... 19 = T9/T10); 20 is the spinal canal.
Abnormalities are scored per disc level (the level is named by its disc, e.g. ``L4/L5``); vertebral
degeneration at a level means the endplates and marrow adjacent to that disc.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

LABELS_PATH = Path(__file__).with_name("data") / "labels.json"


@dataclass(frozen=True)
class Structure:
    """One segmentation class."""

    value: int
    name: str
    kind: str  # "vertebra", "disc" or "canal"
    prompt: str


@dataclass(frozen=True)
class Abnormality:
    """One per-level abnormality."""

    key: str
    scope: str
    prompt: str


@dataclass(frozen=True)
class LabelScheme:
    """Structures and abnormalities, in their canonical order."""

    structures: tuple[Structure, ...]
    abnormalities: tuple[Abnormality, ...]

    @property
    def spine_structures(self) -> tuple[Structure, ...]:
        """The 19 vertebrae and discs (the canal excluded)."""
        return tuple(s for s in self.structures if s.kind in ("vertebra", "disc"))

    @property
    def discs(self) -> tuple[Structure, ...]:
        """Discs in cranio-caudal order (T9/T10 first, L5/S1 last)."""
        return tuple(
            sorted((s for s in self.structures if s.kind == "disc"), key=lambda s: -s.value)
        )

    @property
    def vertebrae(self) -> tuple[Structure, ...]:
        """Vertebrae in cranio-caudal order (T9 first, sacrum last)."""
        return tuple(
            sorted((s for s in self.structures if s.kind == "vertebra"), key=lambda s: -s.value)
        )

    def by_name(self, name: str) -> Structure:
        """Return the structure called ``name``.

        Raises:
            KeyError: if there is no such structure.
        """
        for s in self.structures:
            if s.name == name:
                return s
        raise KeyError(name)


@cache
def load_label_scheme(path: Path = LABELS_PATH) -> LabelScheme:
    """Read the label scheme from JSON.

    Raises:
        OSError: if the file cannot be read.
        ValueError: if it is not a valid scheme (duplicate values or names).
    """
    raw = json.loads(Path(path).read_text())
    structures = tuple(Structure(**s) for s in raw["structures"])
    abnormalities = tuple(Abnormality(**a) for a in raw["abnormalities"])
    if len({s.value for s in structures}) != len(structures):
        raise ValueError("duplicate structure values in label scheme")
    if len({s.name for s in structures}) != len(structures):
        raise ValueError("duplicate structure names in label scheme")
    return LabelScheme(structures=structures, abnormalities=abnormalities)
