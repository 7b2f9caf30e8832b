"""The impression line shared by the SR and the HL7 message."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pacs_node.results.codes import ABNORMALITY_CODES, DISC_CODES
from pacs_node.results.inputs import AI_LABEL, LevelFinding

# Cranio-caudal reading order (T9/T10 first, L5/S1 last).
LEVEL_ORDER = tuple(reversed(DISC_CODES))


def ordered_levels(levels: Iterable[str]) -> list[str]:
    """Distinct disc levels in cranio-caudal order."""
    wanted = set(levels)
    return [level for level in LEVEL_ORDER if level in wanted]


def abnormal(findings: Sequence[LevelFinding]) -> bool:
    """Whether any finding is present."""
    return any(f.present for f in findings)


def impression_text(findings: Sequence[LevelFinding]) -> str:
    """One-paragraph impression: present findings per level, or none, with the AI label.

    Example: ``"L4/L5: intervertebral disc protrusion (p=0.91). No other abnormality detected at
    the 5 levels analysed. AI generated - not for clinical use."``
    """
    levels = ordered_levels(f.level for f in findings)
    parts = []
    for level in levels:
        present = [f for f in findings if f.level == level and f.present]
        if present:
            described = ", ".join(
                f"{ABNORMALITY_CODES[f.abnormality].meaning.lower()} (p={f.probability:.2f})"
                for f in present
            )
            parts.append(f"{level}: {described}.")
    noun = "level" if len(levels) == 1 else "levels"
    if parts:
        tail = f"No other abnormality detected at the {len(levels)} {noun} analysed."
    else:
        tail = f"No abnormality detected at the {len(levels)} {noun} analysed."
    return " ".join([*parts, tail, f"{AI_LABEL}."])
