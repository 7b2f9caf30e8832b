"""Comparison with a prior study: the per-level changes, and how the SR and ORU carry them."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from hl7apy.parser import parse_message

from pacs_node.results import codes
from pacs_node.results.comparison import (
    Change,
    FindingChange,
    HeightChange,
    PriorReport,
    compare,
    read_prior_report,
)
from pacs_node.results.hl7 import build_oru
from pacs_node.results.inputs import LevelFinding, LevelMeasurement
from pacs_node.results.sr import build_sr
from pacs_node.results.sr_findings import levels_from_sr

ABNORMALITIES = tuple(codes.ABNORMALITY_CODES)


def _findings(present: dict[str, set[str]]) -> list[LevelFinding]:
    return [
        LevelFinding(level, key, 0.9 if key in keys else 0.1, key in keys)
        for level, keys in present.items()
        for key in ABNORMALITIES
    ]


def _prior(present: dict[str, set[str]], heights: dict[str, float]) -> PriorReport:
    return PriorReport(
        study_instance_uid="1.2.3.4",
        study_date="20230105",
        accession_number="ACC0001",
        sr_series_instance_uid="1.2.3.4.5",
        sr_sop_instance_uid="1.2.3.4.5.6",
        sr_sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34",
        findings={
            level: {key: key in keys for key in ABNORMALITIES} for level, keys in present.items()
        },
        disc_heights=heights,
    )


@pytest.fixture
def prior() -> PriorReport:
    """L4/L5 bulge and L5/S1 Schmorl's node two years ago; L3/L4 not in its field of view."""
    return _prior(
        {"L4/L5": {"disc_bulge"}, "L5/S1": {"schmorl_node"}},
        {"L4/L5": 9.0, "L5/S1": 8.0},
    )


@pytest.fixture
def current() -> tuple[list[LevelFinding], list[LevelMeasurement]]:
    """Now: the bulge became a protrusion and stays a bulge, the Schmorl's node is gone."""
    findings = _findings(
        {"L3/L4": {"disc_bulge"}, "L4/L5": {"disc_bulge", "disc_protrusion"}, "L5/S1": set()}
    )
    measurements = [
        LevelMeasurement("L4/L5", "disc_height", 7.75, "mm"),
        LevelMeasurement("L5/S1", "disc_height", 8.0, "mm"),
        LevelMeasurement("L3/L4", "disc_height", 10.0, "mm"),
        LevelMeasurement("L4/L5", "canal_diameter", 11.0, "mm", structure="canal"),
    ]
    return findings, measurements


def test_changes_per_level_only_where_both_studies_saw_the_level(prior, current) -> None:
    comparison = compare(*current, prior)
    assert comparison.findings == (
        FindingChange("L4/L5", "disc_bulge", Change.UNCHANGED),
        FindingChange("L4/L5", "disc_protrusion", Change.NEW),
        FindingChange("L5/S1", "schmorl_node", Change.RESOLVED),
    )
    assert comparison.heights == (HeightChange("L4/L5", -1.2), HeightChange("L5/S1", 0.0))
    assert comparison.summary() == (
        "Compared with the prior study of 2023-01-05 (accession ACC0001). "
        "New: intervertebral disc protrusion at L4/L5. Resolved: schmorl's node at L5/S1."
    )


def test_no_change_is_said_plainly(prior) -> None:
    same = _findings({"L4/L5": {"disc_bulge"}, "L5/S1": {"schmorl_node"}})
    comparison = compare(same, [], prior)
    assert {f.change for f in comparison.findings} == {Change.UNCHANGED}
    assert comparison.summary().endswith("No new or resolved findings.")


def test_the_sr_carries_the_changes_and_references_the_prior(
    t2_series, algorithm, context, prior, current, tmp_path: Path, dciodvfy
) -> None:
    findings, measurements = current
    comparison = compare(findings, measurements, prior)
    path = tmp_path / "sr.dcm"
    build_sr(
        t2_series.images,
        findings,
        measurements,
        algorithm=algorithm,
        context=context,
        comparison=comparison,
    ).save_as(path, enforce_file_format=True)
    assert dciodvfy(path) == []
    # Read back as a prior itself: the change rows do not disturb the findings or heights.
    levels = levels_from_sr(path)
    assert levels.findings["L4/L5"] == {
        k: k in {"disc_bulge", "disc_protrusion"} for k in ABNORMALITIES
    }
    assert levels.disc_heights == {"L4/L5": 7.75, "L5/S1": 8.0, "L3/L4": 10.0}
    dataset = pydicom.dcmread(path)
    evidence = dataset.PertinentOtherEvidenceSequence[0]
    assert evidence.StudyInstanceUID == prior.study_instance_uid
    referenced = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert referenced.ReferencedSOPInstanceUID == prior.sr_sop_instance_uid
    dump = path.read_bytes()
    assert comparison.summary().encode() in dump
    report = read_prior_report(path)
    assert report.sr_sop_instance_uid == dataset.SOPInstanceUID


def test_the_oru_carries_the_prior_and_the_changes(t2_series, context, prior, current) -> None:
    findings, measurements = current
    comparison = compare(findings, measurements, prior)
    header = t2_series.images[0]
    er7 = build_oru(header, findings, measurements, context=context, comparison=comparison).to_er7()
    message = parse_message(er7.replace("\n", "\r"))
    rows = [
        (o.obx.obx_3.obx_3_1.value, o.obx.obx_4.value, o.obx.obx_5.value, o.obx.obx_8.value)
        for o in message.oru_r01_patient_result.oru_r01_order_observation.oru_r01_observation
    ]
    by_code = {(code, level): (value, flag) for code, level, value, flag in rows}
    assert by_code[(codes.PRIOR_STUDY_INSTANCE_UID.value, "")][0] == prior.study_instance_uid
    new = by_code[(codes.CHANGE_CODES["disc_protrusion"].value, "L4/L5")]
    assert new[0].startswith(codes.CHANGE_VALUES["new"].value) and new[1] == "A"
    resolved = by_code[(codes.CHANGE_CODES["schmorl_node"].value, "L5/S1")]
    assert resolved[0].startswith(codes.CHANGE_VALUES["resolved"].value) and resolved[1] == ""
    assert by_code[(codes.DISC_HEIGHT_CHANGE.value, "L4/L5")][0] == "-1.2"
    comparison_text = [v for code, _, v, _ in rows if code == codes.COMPARISON.value]
    assert comparison_text and "Compared with the prior study of 2023-01-05" in comparison_text[0]
