"""Per-level abnormalities with realistic co-occurrence, sampled before the geometry is built.

A latent per-patient degeneration score raises or lowers every level together; lower lumbar levels
are hit most (``LEVEL_WEIGHTS``); herniations are likelier at degenerated levels; the three disc
herniation grades (bulge < protrusion < extrusion) are mutually exclusive at a level; Schmorl's
nodes favour the thoracolumbar junction. Vertebral degeneration means Modic-type marrow change at
both endplates, disc height loss and a dark disc.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from models.labels import load_label_scheme

HERNIATIONS = ("disc_bulge", "disc_protrusion", "disc_extrusion")
# Logit offsets per disc level, cranio-caudal (T9/T10 .. L5/S1).
LEVEL_WEIGHTS = (-2.6, -2.4, -2.1, -1.7, -1.3, -0.9, -0.4, 0.0, 0.0)
SCHMORL_WEIGHTS = (-0.3, -0.1, 0.1, 0.2, 0.2, 0.0, -0.3, -0.6, -0.9)


@dataclass(frozen=True)
class LevelPathology:
    """Ground truth and rendering parameters for one disc level.

    Attributes:
        level: Disc level name, e.g. "L4/L5".
        herniation: "none" or one of ``HERNIATIONS``.
        hernia_x: LR offset of a focal herniation (mm; 0 central, +/- paracentral).
        hernia_size: Posterior extent beyond the disc margin (mm).
        hernia_migration: Cranial (+) or caudal (-) migration of an extrusion (mm).
        schmorl: "none", "upper" (into the vertebra above) or "lower".
        schmorl_v: AP position of a Schmorl's node as a fraction of the body half-depth.
        schmorl_radius: Radius of a Schmorl's node (mm).
        modic: 0 (none) or the Modic type 1..3.
        modic_depth: Thickness of the Modic marrow band (mm).
        height_factor: Disc height multiplier (below 1 = height loss).
        darkness: Disc dehydration, 0 (healthy, bright on T2) .. 1 (black disc).
    """

    level: str
    herniation: str = "none"
    hernia_x: float = 0.0
    hernia_size: float = 0.0
    hernia_migration: float = 0.0
    schmorl: str = "none"
    schmorl_v: float = 0.0
    schmorl_radius: float = 0.0
    modic: int = 0
    modic_depth: float = 0.0
    height_factor: float = 1.0
    darkness: float = 0.0

    def findings(self) -> dict[str, bool]:
        """The five abnormality flags of this level, keyed as in ``labels.json``."""
        flags = {key: self.herniation == key for key in HERNIATIONS}
        flags["schmorl_node"] = self.schmorl != "none"
        flags["vertebral_degeneration"] = self.modic > 0
        return flags

    def cleared(self) -> LevelPathology:
        """The same level with no abnormality drawn (used outside the field of view)."""
        return replace(
            self, herniation="none", schmorl="none", modic=0, height_factor=1.0, darkness=0.0
        )


def _logit(p: float) -> float:
    q = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(q / (1 - q)))


def _prob(base: float, offset: float) -> float:
    if base <= 0.0:
        return 0.0
    if base >= 1.0:
        return 1.0
    return float(1.0 / (1.0 + np.exp(-(_logit(base) + offset))))


def sample_pathology(
    rng: np.random.Generator, prevalence: Mapping[str, float]
) -> dict[str, LevelPathology]:
    """Sample the abnormalities of every disc level.

    Args:
        rng: Random source.
        prevalence: Prevalence per abnormality key at L4/L5 for an average patient; missing keys
            count as 0.

    Returns:
        Level name -> pathology, cranio-caudal.

    Raises:
        ValueError: if a prevalence is outside [0, 1].
    """
    if any(not 0.0 <= p <= 1.0 for p in prevalence.values()):
        raise ValueError("prevalence values must lie in [0, 1]")
    levels = [d.name for d in load_label_scheme().discs]
    patient = float(rng.normal(0.0, 1.0))
    out: dict[str, LevelPathology] = {}
    for level, weight, s_weight in zip(levels, LEVEL_WEIGHTS, SCHMORL_WEIGHTS, strict=True):
        effect = weight + 0.8 * patient
        degenerated = rng.random() < _prob(prevalence.get("vertebral_degeneration", 0.0), effect)
        h_effect = effect + (1.2 if degenerated else 0.0)
        probs = np.array([_prob(prevalence.get(k, 0.0), h_effect) for k in HERNIATIONS])
        total = probs.sum()
        if total > 1.0:
            probs /= total
        pick = rng.random()
        cum = np.cumsum(probs)
        herniation = "none"
        for key, c in zip(HERNIATIONS, cum, strict=True):
            if pick < c:
                herniation = key
                break
        p_schmorl = _prob(prevalence.get("schmorl_node", 0.0), s_weight + 0.4 * patient)
        schmorl = "none"
        if rng.random() < p_schmorl:
            schmorl = "upper" if rng.random() < 0.5 else "lower"
        baseline_dark = float(1.0 / (1.0 + np.exp(-(effect - 0.5 + rng.normal(0.0, 0.5)))))
        if degenerated:
            darkness = rng.uniform(0.75, 1.0)
            height = rng.uniform(0.45, 0.75)
        elif herniation != "none":
            darkness = max(baseline_dark * 0.6, rng.uniform(0.3, 0.6))
            height = rng.uniform(0.85, 1.0)
        else:
            darkness = baseline_dark * 0.5
            height = rng.uniform(0.92, 1.05)
        size = {"none": 0.0, "disc_bulge": 2.5, "disc_protrusion": 4.5, "disc_extrusion": 7.0}
        out[level] = LevelPathology(
            level=level,
            herniation=herniation,
            hernia_x=float(rng.choice([0.0, -1.0, 1.0]) * rng.uniform(3.0, 7.0)),
            hernia_size=size[herniation] * float(rng.uniform(0.8, 1.25)),
            hernia_migration=float(rng.choice([-1.0, 1.0]) * rng.uniform(4.0, 9.0)),
            schmorl=schmorl,
            schmorl_v=float(rng.uniform(-0.5, 0.4)),
            schmorl_radius=float(rng.uniform(3.0, 5.5)),
            modic=int(rng.choice([1, 2, 2, 3])) if degenerated else 0,
            modic_depth=float(rng.uniform(4.0, 9.0)),
            height_factor=float(height),
            darkness=float(darkness),
        )
    return out
