"""ORU^R01 builder: strict hl7apy round trip, linking, status, deterministic MSH-10."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from pydicom import Dataset

from pacs_node.hl7.addressing import Hl7Addressing
from pacs_node.results import codes
from pacs_node.results.hl7 import build_not_analysed_oru, build_oru, escape
from pacs_node.results.identity import derive_control_id
from pacs_node.results.inputs import (
    LevelConfidence,
    LevelFinding,
    LevelMeasurement,
    ResultContext,
    ResultStatus,
    StudyQuality,
)


@pytest.fixture
def findings() -> list[LevelFinding]:
    """Two levels, a protrusion at L4/L5."""
    return [
        LevelFinding(level, key, 0.875 if present else 0.125, present)
        for level in ("L5/S1", "L4/L5")
        for key in codes.ABNORMALITY_CODES
        for present in [(level, key) == ("L4/L5", "disc_protrusion")]
    ]


@pytest.fixture
def header(t2_series) -> Dataset:
    """One instance of the analysed study."""
    return t2_series.images[0]


def _parse(er7: str):  # type: ignore[no-untyped-def]
    message = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    message.validate()
    return message


def _obx_rows(er7: str) -> list[list[str]]:
    return [seg.split("|") for seg in er7.split("\r") if seg.startswith("OBX")]


def test_strict_round_trip_and_linking(header, findings, context) -> None:
    measurements = [LevelMeasurement("L4/L5", "disc_height", 8.5, "mm")]
    addressing = Hl7Addressing("AI_NODE", "RADIOLOGY", "RIS", "GENERAL HOSP", "T")
    er7 = build_oru(
        header,
        findings,
        measurements,
        context=dataclasses.replace(context, hl7=addressing),
        placer_order_number="PO-7",
    ).to_er7()
    parsed = _parse(er7)
    msh = [parsed.msh.msh_3, parsed.msh.msh_4, parsed.msh.msh_5, parsed.msh.msh_6]
    assert [field.to_er7() for field in msh] == ["AI_NODE", "RADIOLOGY", "RIS", "GENERAL HOSP"]
    assert parsed.msh.msh_11.to_er7() == "T"
    assert parsed.msh.msh_9.to_er7() == "ORU^R01^ORU_R01"
    assert parsed.msh.msh_12.to_er7() == "2.5"
    assert parsed.msh.msh_10.to_er7() == derive_control_id(context.job_key, "oru/preliminary")
    assert parsed.msh.msh_7.to_er7() == "20260301103015"
    result = parsed.oru_r01_patient_result
    pid = result.oru_r01_patient.pid
    assert pid.pid_3.to_er7() == "PAT-001^^^HOSP"
    assert pid.pid_5.to_er7() == "Doe^Jane"
    assert (pid.pid_7.to_er7(), pid.pid_8.to_er7()) == ("19700101", "F")
    order = result.oru_r01_order_observation
    assert order.orc.orc_1.to_er7() == "RE"
    assert order.obr.obr_2.to_er7() == "PO-7"
    assert order.obr.obr_3.to_er7() == order.obr.obr_18.to_er7() == "ACC-42"
    assert order.obr.obr_25.to_er7() == "P"
    rows = _obx_rows(er7)
    assert rows[0][3].startswith("110180^") and rows[0][5] == header.StudyInstanceUID
    # 2 levels x 5 abnormalities x (finding + probability) + 1 measurement + study UID + impression
    assert len(rows) == 2 * 5 * 2 + 1 + 2
    assert [int(r[1]) for r in rows] == list(range(1, len(rows) + 1))
    assert {r[11] for r in rows} == {"P"}
    present = [r for r in rows if r[2] == "CWE" and r[5].startswith(codes.PRESENT.value)]
    assert len(present) == 1 and present[0][4] == "L4/L5" and present[0][8] == "A"
    assert present[0][3].startswith(codes.ABNORMALITY_CODES["disc_protrusion"].value)
    height = next(r for r in rows if r[3].startswith("121207^"))
    assert (height[4], height[5], height[6]) == ("L4/L5", "8.5", "mm^mm^UCUM")
    assert rows[-1][2] == "TX" and "L4/L5: intervertebral disc protrusion" in rows[-1][5]
    # Cranio-caudal order: L4/L5 rows come before L5/S1 rows.
    levels = [r[4] for r in rows if r[4]]
    assert levels.index("L5/S1") > max(i for i, v in enumerate(levels) if v == "L4/L5")


def test_study_needing_review_and_level_confidences(header, findings, context) -> None:
    reasons = ("only 3 of 5 lumbar discs found", "low confidence at L4/L5 (0.41) | check")
    er7 = build_oru(
        header,
        findings,
        [LevelMeasurement("L4/L5", "disc_height", 8.5, "mm")],
        context=context,
        confidences=[LevelConfidence("L4/L5", 0.41), LevelConfidence("L5/S1", 0.875)],
        quality=StudyQuality(True, reasons),
    ).to_er7()
    _parse(er7)
    rows = _obx_rows(er7)
    assert [int(r[1]) for r in rows] == list(range(1, len(rows) + 1))
    # Right after the Study Instance UID: the verdict, then the reasons.
    verdict, because = rows[1], rows[2]
    assert verdict[2:4] == ["CWE", "PN-QC-002^AI result quality check^99PACSNODE"]
    assert verdict[5] == "PN-QC-003^Low confidence: review^99PACSNODE" and verdict[8] == ""
    assert because[2] == "TX" and because[3].startswith("PN-QC-005^Reason for review^")
    assert (
        because[5] == "only 3 of 5 lumbar discs found; low confidence at L4/L5 (0.41) \\F\\ check"
    )
    # Each level's confidence: an NM row after the level's other rows, sub-ID the level.
    confidence = [r for r in rows if r[3].startswith("PN-QC-001^")]
    assert [(r[2], r[4], r[5], r[6]) for r in confidence] == [
        ("NM", "L4/L5", "0.41", "1^no units^UCUM"),
        ("NM", "L5/S1", "0.875", "1^no units^UCUM"),
    ]
    for row in confidence:
        level_rows = [i for i, r in enumerate(rows) if r[4] == row[4]]
        assert rows.index(row) == level_rows[-1]
    impression = next(r for r in rows if r[3].startswith(codes.IMPRESSION.value))
    assert impression[5].startswith("Low confidence: review (only 3 of 5 lumbar discs found; ")
    passed = _obx_rows(
        build_oru(header, findings, [], context=context, quality=StudyQuality(False)).to_er7()
    )
    assert passed[1][5] == "PN-QC-004^Quality check passed^99PACSNODE"
    assert not [r for r in passed if r[3].startswith("PN-QC-005^")]
    with pytest.raises(ValueError, match="no findings"):
        build_oru(header, findings, [], context=context, confidences=[LevelConfidence("L1/L2", 1)])


@pytest.mark.parametrize(
    ("status", "code"),
    [(ResultStatus.PRELIMINARY, "P"), (ResultStatus.FINAL, "F"), (ResultStatus.CORRECTED, "C")],
)
def test_status_and_deterministic_control_id(header, findings, context, status, code) -> None:
    ctx = ResultContext(
        job_key=context.job_key, created=context.created, software_version="0.1.0", status=status
    )
    er7 = build_oru(header, findings, [], context=ctx).to_er7()
    assert er7 == build_oru(header, findings, [], context=ctx).to_er7()
    parsed = _parse(er7)
    assert parsed.oru_r01_patient_result.oru_r01_order_observation.obr.obr_25.to_er7() == code
    assert {r[11] for r in _obx_rows(er7)} == {code}
    control = parsed.msh.msh_10.to_er7()
    assert len(control) <= 20
    assert control == derive_control_id(context.job_key, f"oru/{status.value}")


def test_delimiters_in_source_fields_are_escaped(header, findings, context) -> None:
    odd = copy.deepcopy(header)
    odd.AccessionNumber = "A|B&C"
    odd.PatientName = "O~Brien^Ann"
    er7 = build_oru(odd, findings, [], context=context).to_er7()
    parsed = _parse(er7)
    assert parsed.oru_r01_patient_result.oru_r01_order_observation.obr.obr_3.to_er7() == (
        "A\\F\\B\\T\\C"
    )
    assert parsed.oru_r01_patient_result.oru_r01_patient.pid.pid_5.to_er7() == "O\\R\\Brien^Ann"
    assert escape("a\\b\nc") == "a\\E\\b c"


def test_missing_linking_or_content_is_rejected(header, findings, context) -> None:
    no_patient = copy.deepcopy(header)
    del no_patient.PatientID
    with pytest.raises(ValueError, match="PatientID"):
        build_oru(no_patient, findings, [], context=context)
    with pytest.raises(ValueError, match="nothing to report"):
        build_oru(header, [], [], context=context)


def test_long_impression_continues_over_several_rows(header, context) -> None:
    """Every finding present at nine levels: the impression is far longer than one OBX-5."""
    levels = ("T9/T10", "T10/T11", "T11/T12", "T12/L1", "L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1")
    everything = [
        LevelFinding(level, key, 0.99, True) for level in levels for key in codes.ABNORMALITY_CODES
    ]
    er7 = build_oru(header, everything, [], context=context).to_er7()
    _parse(er7)
    impression = [row for row in _obx_rows(er7) if row[2] == "TX"]
    assert len(impression) > 1
    assert [row[4] for row in impression] == [str(i) for i in range(1, len(impression) + 1)]
    assert all(len(row[5]) < 200 for row in impression)
    text = " ".join(row[5] for row in impression)
    assert text.startswith("T9/T10:") and text.endswith("not for clinical use.")


def test_not_analysed_message_states_status_and_reason(header, context) -> None:
    reason = "modality CT is not MR | " + "x" * 300
    er7 = build_not_analysed_oru(header, reason, context=context).to_er7()
    parsed = _parse(er7)
    assert parsed.msh.msh_10.to_er7() == derive_control_id(context.job_key, "oru/preliminary")
    pid = parsed.oru_r01_patient_result.oru_r01_patient.pid
    assert pid.pid_3.to_er7().split("^")[0] == header.PatientID
    rows = _obx_rows(er7)
    assert rows[0][2:6] == ["ST", rows[0][3], "", str(header.StudyInstanceUID)]
    status = rows[1]
    assert status[2] == "CWE" and status[3].startswith(codes.ANALYSIS_STATUS.value)
    assert status[5].startswith(codes.NOT_ANALYSED.value) and status[8] == ""
    reason_rows = rows[2:]
    assert len(reason_rows) == 2 and all(
        r[3].startswith(codes.NOT_ANALYSED_REASON.value) for r in reason_rows
    )
    assert "".join(r[5] for r in reason_rows).replace(" ", "") == escape(reason).replace(" ", "")
    assert not [r for r in rows if r[3].startswith(codes.IMPRESSION.value)]
    with pytest.raises(ValueError, match="reason"):
        build_not_analysed_oru(header, " ", context=context)


@pytest.mark.parametrize(
    "addressing",
    [{"receiving_application": "RIS|X"}, {"sending_facility": "A" * 21}, {"processing_id": "X"}],
)
def test_addressing_that_hl7_cannot_carry_is_rejected(addressing: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        Hl7Addressing(**addressing)
