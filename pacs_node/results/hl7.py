"""HL7 v2.5 ORU^R01 carrying the per-level results to the RIS/EMR (hl7apy, strict validation).

Layout: MSH, PID (patient from the DICOM study), ORC/OBR (order: accession number as filler order
number and OBR-18, result status in OBR-25), then OBX rows: the Study Instance UID, the model's
quality check (CWE: passed, or "Low confidence: review" then its reasons as TX), one CWE row per
level and abnormality (Present/Absent, abnormal flag ``A`` when present), one NM row per
probability, per measurement and for the level's confidence (OBX-4 sub-ID = the level, e.g.
``L4/L5``), and the impression as TX. Compared with a prior study, the message also carries the
prior's Study Instance UID, per level each finding's change (new, resolved, unchanged) and the
disc height change, and the comparison as TX. A study the node did not analyse gets the same
message with an analysis status row ("Not analysed") and the reason instead of findings. MSH-10
is derived from the job and the status, so a resend is the same message.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import NamedTuple

from highdicom.sr import CodedConcept
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Group, Message
from pydicom import Dataset
from pydicom.valuerep import PersonName

from pacs_node.results import codes
from pacs_node.results.comparison import Change, Comparison
from pacs_node.results.identity import derive_control_id
from pacs_node.results.inputs import (
    LevelConfidence,
    LevelFinding,
    LevelMeasurement,
    ResultContext,
    StudyQuality,
)
from pacs_node.results.summary import confidences_by_level, impression_text, ordered_levels

# Characters of free text per OBX row: below OBX-5's limit, leaving room for escapes.
IMPRESSION_CHUNK_CHARS = 180
_ESCAPES = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"}


def escape(text: str) -> str:
    """Escape HL7 delimiters in free text (HL7 v2.5 section 2.7) and drop line breaks."""
    text = " ".join(text.split())
    return "".join(_ESCAPES.get(char, char) for char in text)


def _ce(code: CodedConcept) -> str:
    return f"{escape(code.value)}^{escape(code.meaning)}^{escape(code.scheme_designator)}"


def _xpn(name: object) -> str:
    pn = PersonName(str(name or ""))
    parts = [pn.family_name, pn.given_name, pn.middle_name, pn.name_suffix, pn.name_prefix]
    return "^".join(escape(p) for p in parts).rstrip("^")


def _sex(value: object) -> str:
    return {"M": "M", "F": "F", "O": "O"}.get(str(value or "").upper(), "U")


class _Row(NamedTuple):
    value_type: str
    identifier: CodedConcept
    value: str
    sub_id: str = ""
    units: CodedConcept | None = None
    abnormal: bool = False


def _add_obx(order: Group, set_id: int, row: _Row, status: str) -> None:
    obx = order.add_group("ORU_R01_OBSERVATION").add_segment("OBX")
    obx.obx_1 = str(set_id)
    obx.obx_2 = row.value_type
    obx.obx_3 = _ce(row.identifier)
    if row.sub_id:
        obx.obx_4 = escape(row.sub_id)
    obx.obx_5 = row.value
    if row.units is not None:
        obx.obx_6 = _ce(row.units)
    if row.abnormal:
        obx.obx_8 = "A"
    obx.obx_11 = status


def _rows(
    study_uid: str,
    findings: Sequence[LevelFinding],
    measurements: Sequence[LevelMeasurement],
    comparison: Comparison | None,
    confidences: Sequence[LevelConfidence],
    quality: StudyQuality | None,
) -> list[_Row]:
    rows = [_Row("ST", codes.STUDY_INSTANCE_UID, study_uid)]
    if comparison is not None:
        prior_uid = comparison.prior.study_instance_uid
        rows.append(_Row("ST", codes.PRIOR_STUDY_INSTANCE_UID, prior_uid))
    if quality is not None:
        rows += _quality_rows(quality)
    levels = ordered_levels([f.level for f in findings] + [m.level for m in measurements])
    confidence_by_level = confidences_by_level(confidences, levels)
    for level in levels:
        for f in (f for f in findings if f.level == level):
            value = codes.PRESENT if f.present else codes.ABSENT
            rows.append(
                _Row(
                    "CWE",
                    codes.ABNORMALITY_CODES[f.abnormality],
                    _ce(value),
                    level,
                    abnormal=f.present,
                )
            )
            rows.append(
                _Row(
                    "NM",
                    codes.ABNORMALITY_PROBABILITY_CODES[f.abnormality],
                    _number(f.probability),
                    level,
                    codes.NO_UNITS,
                )
            )
        for m in (m for m in measurements if m.level == level):
            name, unit = codes.MEASUREMENT_CODES[m.name]
            rows.append(_Row("NM", name, _number(m.value), level, unit))
        if level in confidence_by_level:
            confidence = _number(confidence_by_level[level].confidence)
            rows.append(_Row("NM", codes.LEVEL_CONFIDENCE, confidence, level, codes.NO_UNITS))
        if comparison is not None:
            rows.extend(_change_rows(comparison, level))
    rows += _text_rows(codes.IMPRESSION, impression_text(findings, quality))
    if comparison is not None:
        rows += _text_rows(codes.COMPARISON, comparison.summary())
    return rows


def _quality_rows(quality: StudyQuality) -> list[_Row]:
    """The study check's verdict (CWE), then its reasons for review, "; "-separated (TX)."""
    verdict = codes.NEEDS_REVIEW if quality.needs_review else codes.QUALITY_PASSED
    rows = [_Row("CWE", codes.QUALITY_CHECK, _ce(verdict))]
    if quality.needs_review:
        rows += _text_rows(codes.REVIEW_REASON, "; ".join(quality.reasons))
    return rows


def _change_rows(comparison: Comparison, level: str) -> list[_Row]:
    """A level's changes since the prior: a CWE row per finding, an NM row for the disc height
    (abnormal flag on new findings)."""
    changes, height = comparison.at(level)
    rows = [
        _Row(
            "CWE",
            codes.CHANGE_CODES[c.abnormality],
            _ce(codes.CHANGE_VALUES[c.change.value]),
            level,
            abnormal=c.change is Change.NEW,
        )
        for c in changes
    ]
    if height is not None:
        value = _number(height.change_mm)
        rows.append(_Row("NM", codes.DISC_HEIGHT_CHANGE, value, level, codes.MILLIMETER))
    return rows


def _text_rows(identifier: CodedConcept, text: str) -> list[_Row]:
    """TX rows of ``text``: OBX-5 is limited in length, so a long text continues in further
    rows (OBX-4 = 1, 2...)."""
    chunks = textwrap.wrap(text, IMPRESSION_CHUNK_CHARS)
    numbered = len(chunks) > 1
    return [
        _Row("TX", identifier, escape(chunk), str(number) if numbered else "")
        for number, chunk in enumerate(chunks, start=1)
    ]


def _number(value: float) -> str:
    return f"{value:.6g}"


def _add_pid(patient: Group, header: Dataset) -> None:
    pid = patient.add_segment("PID")
    pid.pid_1 = "1"
    issuer = escape(str(header.get("IssuerOfPatientID", "")))
    pid.pid_3 = f"{escape(str(header.PatientID))}^^^{issuer}".rstrip("^")
    pid.pid_5 = _xpn(header.get("PatientName"))
    if header.get("PatientBirthDate"):
        pid.pid_7 = str(header.PatientBirthDate)
    pid.pid_8 = _sex(header.get("PatientSex"))


def _add_order(order: Group, header: Dataset, placer: str, context: ResultContext) -> None:
    accession = escape(str(header.get("AccessionNumber", "")))
    orc = order.add_segment("ORC")
    orc.orc_1 = "RE"
    obr = order.add_segment("OBR")
    obr.obr_1 = "1"
    if placer:
        orc.orc_2 = obr.obr_2 = escape(placer)
    if accession:
        orc.orc_3 = obr.obr_3 = obr.obr_18 = accession
    obr.obr_4 = _ce(codes.AI_SPINE_ANALYSIS)
    study_datetime = f"{header.get('StudyDate', '')}{header.get('StudyTime', '')}".split(".")[0]
    if study_datetime:
        obr.obr_7 = study_datetime
    obr.obr_22 = context.created.strftime("%Y%m%d%H%M%S")
    obr.obr_24 = "RAD"
    obr.obr_25 = context.status.hl7_code


def build_oru(
    source_study_header: Dataset,
    findings: Sequence[LevelFinding],
    measurements: Sequence[LevelMeasurement],
    *,
    context: ResultContext,
    placer_order_number: str = "",
    comparison: Comparison | None = None,
    confidences: Sequence[LevelConfidence] = (),
    quality: StudyQuality | None = None,
) -> Message:
    """Build the ORU^R01 of an analysed study.

    Args:
        source_study_header: One instance of the analysed study: patient (PID), accession number
            and Study Instance UID come from it.
        findings: Abnormality scores per disc level.
        measurements: Measurements per disc level.
        context: The job; its status gives OBR-25/OBX-11 (``P``, ``F`` or ``C``) and, with the job
            key, the message control ID; its ``hl7`` the MSH addressing.
        placer_order_number: ORC-2/OBR-2 when the order is known.
        comparison: The changes since the patient's prior study: the prior's Study Instance
            UID, per level each finding's change and the disc height change, and the comparison
            text after the impression.
        confidences: The model's confidence per level: an NM row after the level's others.
        quality: The model's study check: a CWE row after the Study Instance UID(s), passed or
            "Low confidence: review" followed by its reasons (TX), and the impression opens with
            the call for review; None writes no verdict.

    Returns:
        The message, valid under hl7apy's strict validation; ``.to_er7()`` encodes it.

    Raises:
        ValueError: if the study header lacks a Patient ID or Study Instance UID, there is
            nothing to report, or a confidence is of a level not reported or given twice.
        hl7apy.exceptions.ValidationError: if the message does not validate (a bug).
    """
    if not findings and not measurements:
        raise ValueError("nothing to report: no findings and no measurements")
    _check_linking(source_study_header)
    rows = _rows(
        str(source_study_header.StudyInstanceUID),
        findings,
        measurements,
        comparison,
        confidences,
        quality,
    )
    return _message(source_study_header, rows, context, placer_order_number)


def build_not_analysed_oru(
    source_study_header: Dataset,
    reason: str,
    *,
    context: ResultContext,
    placer_order_number: str = "",
) -> Message:
    """Build the ORU^R01 of a study the node did not analyse, so the RIS stops waiting for it.

    OBX rows: the Study Instance UID, the analysis status "Not analysed" (abnormal flag unset)
    and the reason as text; the same patient, order and control-ID rules as :func:`build_oru`.

    Raises:
        ValueError: if the study header lacks a Patient ID or Study Instance UID, or ``reason``
            is empty.
        hl7apy.exceptions.ValidationError: if the message does not validate (a bug).
    """
    if not reason.strip():
        raise ValueError("reason must not be empty")
    _check_linking(source_study_header)
    rows = [
        _Row("ST", codes.STUDY_INSTANCE_UID, str(source_study_header.StudyInstanceUID)),
        _Row("CWE", codes.ANALYSIS_STATUS, _ce(codes.NOT_ANALYSED)),
        *_text_rows(codes.NOT_ANALYSED_REASON, reason),
    ]
    return _message(source_study_header, rows, context, placer_order_number)


def _check_linking(header: Dataset) -> None:
    for keyword in ("PatientID", "StudyInstanceUID"):
        if not header.get(keyword):
            raise ValueError(f"source study header lacks {keyword}")


def _message(
    header: Dataset, rows: Sequence[_Row], context: ResultContext, placer_order_number: str
) -> Message:
    status = context.status.hl7_code
    message = Message("ORU_R01", version="2.5", validation_level=VALIDATION_LEVEL.STRICT)
    msh = message.msh
    addressing = context.hl7
    msh.msh_3 = addressing.sending_application
    msh.msh_4 = addressing.sending_facility
    msh.msh_5 = addressing.receiving_application
    msh.msh_6 = addressing.receiving_facility
    msh.msh_7 = context.created.strftime("%Y%m%d%H%M%S")
    msh.msh_9 = "ORU^R01^ORU_R01"
    msh.msh_10 = derive_control_id(context.job_key, f"oru/{context.status.value}")
    msh.msh_11 = addressing.processing_id
    msh.msh_12 = "2.5"
    result = message.add_group("ORU_R01_PATIENT_RESULT")
    _add_pid(result.add_group("ORU_R01_PATIENT"), header)
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    _add_order(order, header, placer_order_number, context)
    for set_id, row in enumerate(rows, start=1):
        _add_obx(order, set_id, row, status)
    message.validate()
    return message
