"""Comparison with the patient's prior study: what changed per disc level since then.

The prior's findings come from the SR the node made of it (:func:`read_prior_report`), never from
its SEG or ORU, and the prior's own results are never sent as the current study's: the current
SR and ORU only say, per level, which findings are new, resolved or unchanged and how much the
disc height changed, and name the prior study.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import pydicom

from pacs_node.results.codes import ABNORMALITY_CODES
from pacs_node.results.inputs import LevelFinding, LevelMeasurement
from pacs_node.results.sr_findings import levels_from_sr
from pacs_node.results.summary import ordered_levels

DISC_HEIGHT = "disc_height"


class Change(StrEnum):
    """How a finding at a level compares with the prior study."""

    NEW = "new"
    RESOLVED = "resolved"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class PriorReport:
    """What the node's SR of the prior study says, and where that SR is.

    Attributes:
        study_instance_uid: The prior study.
        study_date: Its StudyDate (DA, may be empty).
        accession_number: Its AccessionNumber (may be empty).
        sr_series_instance_uid: The series of the prior's SR.
        sr_sop_instance_uid: The prior's SR.
        sr_sop_class_uid: Its SOP class.
        findings: Per level, each abnormality's present/absent call.
        disc_heights: Per level, the disc height in mm.
    """

    study_instance_uid: str
    study_date: str
    accession_number: str
    sr_series_instance_uid: str
    sr_sop_instance_uid: str
    sr_sop_class_uid: str
    findings: dict[str, dict[str, bool]]
    disc_heights: dict[str, float]

    @property
    def described(self) -> str:
        """The prior as a reader names it: its date (YYYY-MM-DD) and accession number."""
        date = self.study_date
        when = f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 else "an unknown date"
        return f"prior study of {when}" + (
            f" (accession {self.accession_number})" if self.accession_number else ""
        )


@dataclass(frozen=True)
class FindingChange:
    """One abnormality at one level: new, resolved or unchanged since the prior."""

    level: str
    abnormality: str
    change: Change


@dataclass(frozen=True)
class HeightChange:
    """A level's disc height now minus on the prior, in mm."""

    level: str
    change_mm: float


@dataclass(frozen=True)
class Comparison:
    """The current study against its prior, level by level (levels seen in both only)."""

    prior: PriorReport
    findings: tuple[FindingChange, ...]
    heights: tuple[HeightChange, ...]

    def at(self, level: str) -> tuple[list[FindingChange], HeightChange | None]:
        """The changes at one level."""
        height = next((h for h in self.heights if h.level == level), None)
        return [f for f in self.findings if f.level == level], height

    def summary(self) -> str:
        """One sentence per kind of change, for the report's comparison text."""
        parts = [f"Compared with the {self.prior.described}."]
        for change in (Change.NEW, Change.RESOLVED):
            items = [
                f"{ABNORMALITY_CODES[f.abnormality].meaning.lower()} at {f.level}"
                for f in self.findings
                if f.change is change
            ]
            if items:
                parts.append(f"{change.value.capitalize()}: {', '.join(items)}.")
        if not any(f.change is not Change.UNCHANGED for f in self.findings):
            parts.append("No new or resolved findings.")
        return " ".join(parts)


def compare(
    findings: Sequence[LevelFinding],
    measurements: Sequence[LevelMeasurement],
    prior: PriorReport,
) -> Comparison:
    """Compare the current study's findings and disc heights with the prior's.

    Only levels seen in both studies are compared; an abnormality absent in both is left out.
    """
    current: dict[str, dict[str, bool]] = {}
    for f in findings:
        current.setdefault(f.level, {})[f.abnormality] = f.present
    changes = []
    for level in ordered_levels([lvl for lvl in current if lvl in prior.findings]):
        before = prior.findings[level]
        for abnormality, now in current[level].items():
            if abnormality not in before or not (now or before[abnormality]):
                continue
            if now and before[abnormality]:
                change = Change.UNCHANGED
            else:
                change = Change.NEW if now else Change.RESOLVED
            changes.append(FindingChange(level, abnormality, change))
    heights = [
        HeightChange(m.level, round(m.value - prior.disc_heights[m.level], 1))
        for m in measurements
        if m.name == DISC_HEIGHT and m.structure is None and m.level in prior.disc_heights
    ]
    return Comparison(prior, tuple(changes), tuple(heights))


def read_prior_report(path: Path) -> PriorReport:
    """Read the node's TID 1500 SR of a prior study.

    Raises:
        OSError: if the file cannot be read.
        ValueError: if it is not a measurement report.
    """
    levels = levels_from_sr(path)
    header = pydicom.dcmread(path, stop_before_pixels=True)
    return PriorReport(
        study_instance_uid=str(header.StudyInstanceUID),
        study_date=str(header.get("StudyDate", "") or ""),
        accession_number=str(header.get("AccessionNumber", "") or ""),
        sr_series_instance_uid=str(header.SeriesInstanceUID),
        sr_sop_instance_uid=str(header.SOPInstanceUID),
        sr_sop_class_uid=str(header.SOPClassUID),
        findings=levels.findings,
        disc_heights=levels.disc_heights,
    )
