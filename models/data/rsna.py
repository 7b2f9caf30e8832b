"""RSNA 2024 Lumbar Spine Degenerative Classification layout: CSV parsing (no DICOM here).

Layout: ``train.csv`` (study_id + 25 condition/level columns with severities),
``train_series_descriptions.csv`` (study_id, series_id, series_description) and
``train_images/<study_id>/<series_id>/<instance>.dcm``. DICOM reading lives in the worker package;
this module turns the CSVs into per-study records and report sentences for contrastive training.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

ROLES = {"Sagittal T1": "SAG_T1", "Sagittal T2/STIR": "SAG_T2", "Axial T2": "AX_T2"}
CONDITIONS = (
    "spinal_canal_stenosis",
    "left_neural_foraminal_narrowing",
    "right_neural_foraminal_narrowing",
    "left_subarticular_stenosis",
    "right_subarticular_stenosis",
)
LEVELS = {"l1_l2": "L1/L2", "l2_l3": "L2/L3", "l3_l4": "L3/L4", "l4_l5": "L4/L5", "l5_s1": "L5/S1"}
SEVERITIES = ("Normal/Mild", "Moderate", "Severe")


@dataclass
class RsnaStudy:
    """One RSNA study: its series folders by role and its graded conditions.

    Attributes:
        study_id: the RSNA study id.
        series: role (SAG_T1 / SAG_T2 / AX_T2) -> series folder.
        grades: (condition, level name) -> severity string.
    """

    study_id: str
    series: dict[str, Path] = field(default_factory=dict)
    grades: dict[tuple[str, str], str] = field(default_factory=dict)

    def report(self) -> str:
        """Report sentences from the grades (moderate and severe findings; else a normal line).

        Raises:
            Nothing.
        """
        sentences = [
            f"{severity.lower()} {condition.replace('_', ' ')} at {level}."
            for (condition, level), severity in sorted(self.grades.items(), key=lambda g: g[0][1])
            if severity != SEVERITIES[0]
        ]
        if not sentences:
            return "No moderate or severe stenosis at L1/L2 through L5/S1."
        return " ".join(s[0].upper() + s[1:] for s in sentences)


def read_rsna(root: Path, images_dir: str = "train_images") -> list[RsnaStudy]:
    """Index an RSNA 2024 folder.

    Raises:
        FileNotFoundError: if ``train_series_descriptions.csv`` is missing.
        ValueError: if a severity value is not one of the three RSNA grades.
    """
    descriptions = root / "train_series_descriptions.csv"
    if not descriptions.is_file():
        raise FileNotFoundError(descriptions)
    studies: dict[str, RsnaStudy] = {}
    with descriptions.open(newline="") as handle:
        for row in csv.DictReader(handle):
            study = studies.setdefault(row["study_id"], RsnaStudy(row["study_id"]))
            role = ROLES.get(row["series_description"])
            if role is not None and role not in study.series:
                study.series[role] = root / images_dir / row["study_id"] / row["series_id"]
    grades_path = root / "train.csv"
    if grades_path.is_file():
        with grades_path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                study = studies.setdefault(row["study_id"], RsnaStudy(row["study_id"]))
                for condition in CONDITIONS:
                    for suffix, level in LEVELS.items():
                        value = row.get(f"{condition}_{suffix}", "")
                        if not value:
                            continue
                        if value not in SEVERITIES:
                            raise ValueError(f"unknown severity {value!r}")
                        study.grades[(condition, level)] = value
    return [studies[k] for k in sorted(studies)]
