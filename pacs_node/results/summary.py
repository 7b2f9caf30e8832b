"""What the SR and the HL7 message share: level order, the impression line, confidences."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pacs_node.results.codes import ABNORMALITY_CODES, DISC_CODES, NEEDS_REVIEW
from pacs_node.results.inputs import AI_LABEL, LevelConfidence, LevelFinding, StudyQuality

# Cranio-caudal reading order (T9/T10 first, L5/S1 last).
LEVEL_ORDER = tuple(reversed(DISC_CODES))


def ordered_levels(levels: Iterable[str]) -> list[str]:
    """Distinct disc levels in cranio-caudal order."""
    wanted = set(levels)
    return [level for level in LEVEL_ORDER if level in wanted]


def abnormal(findings: Sequence[LevelFinding]) -> bool:
    """Whether any finding is present."""
    return any(f.present for f in findings)


def confidences_by_level(
    confidences: Sequence[LevelConfidence], levels: Sequence[str]
) -> dict[str, LevelConfidence]:
    """The confidences by level.

    Raises:
        ValueError: if a level has more than one confidence, or one is of a level not in
            ``levels`` (the levels reported).
    """
    by_level: dict[str, LevelConfidence] = {}
    for confidence in confidences:
        if confidence.level in by_level:
            raise ValueError(f"level {confidence.level} has more than one confidence")
        if confidence.level not in levels:
            raise ValueError(f"level {confidence.level} has a confidence but no findings")
        by_level[confidence.level] = confidence
    return by_level


def impression_text(findings: Sequence[LevelFinding], quality: StudyQuality | None = None) -> str:
    """One-paragraph impression: present findings per level, or none, with the AI label; opened
    by the study check's call for review when it asks for one.

    Example: ``"Low confidence: review (sacrum not in view). L4/L5: intervertebral disc
    protrusion (p=0.91). No other abnormality detected at the 5 levels analysed. AI generated -
    not for clinical use."``
    """
    levels = ordered_levels(f.level for f in findings)
    parts = []
    if quality is not None and quality.needs_review:
        parts.append(f"{NEEDS_REVIEW.meaning} ({'; '.join(quality.reasons)}).")
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
