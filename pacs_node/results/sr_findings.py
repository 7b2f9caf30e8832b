"""Reading the findings back from a TID 1500 SR: what a PACS user sees, per disc level.

A level's findings may sit in any of its groups (TID 1410, 1411 or 1501, in "Imaging
Measurements" or, for a level without an image region, in the "Levels not localised on the images"
container); the groups of a level share its tracking identifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
from pydicom import Dataset

from pacs_node.results import codes

ABNORMALITY_BY_CODE = {code.value: key for key, code in codes.ABNORMALITY_CODES.items()}
_HEIGHT_NAME = codes.MEASUREMENT_CODES["disc_height"][0]


@dataclass(frozen=True)
class SrLevels:
    """What a measurement report says per disc level.

    Attributes:
        findings: Each abnormality's present/absent call.
        disc_heights: The disc height in mm.
    """

    findings: dict[str, dict[str, bool]]
    disc_heights: dict[str, float]


def levels_from_sr(path: Path) -> SrLevels:
    """Per disc level, the abnormality calls and the disc height in a TID 1500 SR file.

    Raises:
        OSError: if the file cannot be read.
        ValueError: if it is not a measurement report.
    """
    document = hd.sr.srread(path)
    report = document.content
    if not isinstance(report, hd.sr.MeasurementReport):
        raise ValueError(f"{path} is not a TID 1500 measurement report")
    groups = [
        *report.get_planar_roi_measurement_groups(),
        *report.get_volumetric_roi_measurement_groups(),
        *report.get_image_measurement_groups(),
        *_unlocalised_groups(document.ContentSequence),
    ]
    levels = SrLevels({}, {})
    for group in groups:
        level = str(group.tracking_identifier)
        calls = levels.findings.setdefault(level, {})
        for evaluation in group.get_qualitative_evaluations():
            key = ABNORMALITY_BY_CODE.get(evaluation.name.value)
            value = evaluation.value
            if key is not None and isinstance(value, hd.sr.CodedConcept):
                calls[key] = value.value == codes.PRESENT.value
        disc = codes.DISC_CODES.get(level)
        for measurement in group.get_measurements(name=_HEIGHT_NAME):
            if all(site.value == disc for site in measurement.finding_sites):
                levels.disc_heights[level] = float(measurement.value)
    return levels


def _unlocalised_groups(
    root: Sequence[Dataset],
) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    """The TID 1501 groups of the levels the report could not place on an image."""
    return [
        hd.sr.MeasurementsAndQualitativeEvaluations.from_sequence([group])
        for container in root
        if container.ValueType == "CONTAINER"
        and container.ConceptNameCodeSequence[0].CodeValue == codes.UNLOCALISED_LEVELS.value
        and container.ConceptNameCodeSequence[0].CodingSchemeDesignator == codes.LOCAL_SCHEME
        for group in container.ContentSequence
    ]


def findings_from_sr(path: Path) -> dict[str, dict[str, bool]]:
    """Per disc level, each abnormality's present/absent call in a TID 1500 SR file.

    Raises:
        OSError: if the file cannot be read.
        ValueError: if it is not a measurement report.
    """
    return levels_from_sr(path).findings
