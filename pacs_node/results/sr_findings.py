"""Reading the findings back from a TID 1500 SR: what a PACS user sees, per disc level."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd

from pacs_node.results import codes

ABNORMALITY_BY_CODE = {code.value: key for key, code in codes.ABNORMALITY_CODES.items()}


def findings_from_sr(path: Path) -> dict[str, dict[str, bool]]:
    """Per disc level, each abnormality's present/absent call in a TID 1500 SR file.

    Raises:
        OSError: if the file cannot be read.
        ValueError: if it is not a measurement report.
    """
    document = hd.sr.srread(path)
    report = document.content
    if not isinstance(report, hd.sr.MeasurementReport):
        raise ValueError(f"{path} is not a TID 1500 measurement report")
    groups = [
        *report.get_volumetric_roi_measurement_groups(),
        *report.get_image_measurement_groups(),
    ]
    findings: dict[str, dict[str, bool]] = {}
    for group in groups:
        calls = findings.setdefault(str(group.tracking_identifier), {})
        for evaluation in group.get_qualitative_evaluations():
            key = ABNORMALITY_BY_CODE.get(evaluation.name.value)
            value = evaluation.value
            if key is not None and isinstance(value, hd.sr.CodedConcept):
                calls[key] = value.value == codes.PRESENT.value
    return findings
