"""Every coded concept the result builders write, in one place.

Anatomy uses SNOMED CT (``SCT``) codes, each checked against pydicom's DICOM concept dictionary
(``pydicom.sr.codedict.codes.SCT``; PS3.16 CID 7602/7603/7604 "Spine", "Vertebra", "Intervertebral
disc"). Measurement names and SR structure use DICOM (``DCM``), SNOMED CT and UCUM codes that the
same dictionary holds.

No SNOMED CT code for the five abnormalities (disc bulge, protrusion, extrusion, Schmorl's node,
vertebral degeneration) is in that dictionary, and codes are never invented under ``SCT``. They use
a private coding scheme, ``99PACSNODE`` (the ``99`` prefix marks a local scheme, PS3.3 8.2), which
is declared in every SR and SEG through the Coding Scheme Identification Sequence
(:data:`LOCAL_CODING_SCHEME`). Local code values are stable: never reuse one for a new meaning.

Structure names follow the project's label scheme: vertebrae ``"S"``, ``"L5"`` .. ``"L1"``,
``"T12"`` .. ``"T9"``, discs ``"L5/S1"`` .. ``"T9/T10"`` and ``"canal"``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import CodedConcept

LOCAL_SCHEME: Final = "99PACSNODE"
"""Coding scheme designator of the node's private codes."""

LOCAL_CODING_SCHEME: Final = CodingSchemeIdentificationItem(
    designator=LOCAL_SCHEME,
    name="pacs-node local codes for AI lumbar spine findings",
    version="1",
    responsible_organization="pacs-node project",
)


def _sct(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value=value, scheme_designator="SCT", meaning=meaning)


def _dcm(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value=value, scheme_designator="DCM", meaning=meaning)


def _ucum(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value=value, scheme_designator="UCUM", meaning=meaning)


def _local(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value=value, scheme_designator=LOCAL_SCHEME, meaning=meaning)


# --- Anatomy (SNOMED CT) --------------------------------------------------------------------------

VERTEBRA_CODES: Final = MappingProxyType(
    {
        "S": _sct("54735007", "Sacrum"),
        "L5": _sct("49668003", "L5 vertebra"),
        "L4": _sct("11994002", "L4 vertebra"),
        "L3": _sct("36470004", "L3 vertebra"),
        "L2": _sct("14293000", "L2 vertebra"),
        "L1": _sct("66794005", "L1 vertebra"),
        "T12": _sct("23215003", "T12 vertebra"),
        "T11": _sct("12989004", "T11 vertebra"),
        "T10": _sct("7610001", "T10 vertebra"),
        "T9": _sct("82687006", "T9 vertebra"),
    }
)
"""Vertebra name -> SNOMED CT code (CID 7603)."""

DISC_CODES: Final = MappingProxyType(
    {
        "L5/S1": _sct("715056000", "L5/S1 disc"),
        "L4/L5": _sct("84020006", "L4/L5 disc"),
        "L3/L4": _sct("62551000", "L3/L4 disc"),
        "L2/L3": _sct("67459009", "L2/L3 disc"),
        "L1/L2": _sct("80064006", "L1/L2 disc"),
        "T12/L1": _sct("76206002", "T12/L1 disc"),
        "T11/T12": _sct("1537001", "T11/T12 disc"),
        "T10/T11": _sct("34959001", "T10/T11 disc"),
        "T9/T10": _sct("113209001", "T9/T10 disc"),
    }
)
"""Disc level name -> SNOMED CT code (CID 7604). Levels are named by their disc."""

CANAL: Final = _sct("61853006", "Vertebral canal")
LUMBAR_SPINE: Final = _sct("122496007", "Lumbar spine")

STRUCTURE_CODES: Final = MappingProxyType({**VERTEBRA_CODES, **DISC_CODES, "canal": CANAL})
"""Every segmentable structure name -> its SNOMED CT anatomy code."""

ANATOMICAL_STRUCTURE: Final = _sct("91723000", "Anatomical Structure")
"""Segmented property category of every structure (CID 7150)."""

# --- Findings -------------------------------------------------------------------------------------

ABNORMALITY_CODES: Final = MappingProxyType(
    {
        "disc_bulge": _local("PN-ABN-001", "Intervertebral disc bulge"),
        "disc_protrusion": _local("PN-ABN-002", "Intervertebral disc protrusion"),
        "disc_extrusion": _local("PN-ABN-003", "Intervertebral disc extrusion"),
        "schmorl_node": _local("PN-ABN-004", "Schmorl's node"),
        "vertebral_degeneration": _local("PN-ABN-005", "Degenerative endplate and marrow change"),
    }
)
"""Abnormality key -> finding code (local scheme: no SNOMED CT code is available offline)."""

ABNORMALITY_PROBABILITY_CODES: Final = MappingProxyType(
    {
        "disc_bulge": _local("PN-PRB-001", "Probability of intervertebral disc bulge"),
        "disc_protrusion": _local("PN-PRB-002", "Probability of intervertebral disc protrusion"),
        "disc_extrusion": _local("PN-PRB-003", "Probability of intervertebral disc extrusion"),
        "schmorl_node": _local("PN-PRB-004", "Probability of Schmorl's node"),
        "vertebral_degeneration": _local(
            "PN-PRB-005", "Probability of degenerative endplate and marrow change"
        ),
    }
)
"""Abnormality key -> name of its model probability measurement (local scheme, unit ``1``)."""

PRESENT: Final = _sct("52101004", "Present")
ABSENT: Final = _sct("272519000", "Absent")
IMAGING_RESULT_ABNORMAL: Final = _sct("408574004", "Imaging result abnormal")
IMAGING_RESULT_NORMAL: Final = _sct("408573005", "Imaging result normal")

# --- Measurements ---------------------------------------------------------------------------------

MILLIMETER: Final = _ucum("mm", "mm")
SQUARE_MILLIMETER: Final = _ucum("mm2", "square millimeter")
CUBIC_MILLIMETER: Final = _ucum("mm3", "cubic millimeter")
NO_UNITS: Final = _ucum("1", "no units")

MEASUREMENT_CODES: Final = MappingProxyType(
    {
        "disc_height": (_dcm("121207", "Height"), MILLIMETER),
        "disc_area": (_sct("42798000", "Area"), SQUARE_MILLIMETER),
        "disc_volume": (_sct("118565006", "Volume"), CUBIC_MILLIMETER),
        "canal_diameter": (_sct("81827009", "Diameter"), MILLIMETER),
    }
)
"""Measurement name -> (concept name, UCUM unit). The finding site says what was measured."""

# --- Report structure (PS3.16 TID 1500) -----------------------------------------------------------

IMAGING_MEASUREMENT_REPORT: Final = _dcm("126000", "Imaging Measurement Report")
IMAGING_PROCEDURE: Final = _sct("363679005", "Imaging procedure")
QUALITATIVE_EVALUATIONS: Final = CodedConcept(
    value="C0034375", scheme_designator="UMLS", meaning="Qualitative Evaluations"
)
"""TID 1500 row 12 container, which holds the report-level impression."""
IMPRESSION: Final = _dcm("121073", "Impression")
SUMMARY: Final = _dcm("121111", "Summary")
DEVICE: Final = _dcm("121007", "Device")
"""Observer type of the SR's observation context: the AI is a device observer."""
ARTIFICIAL_INTELLIGENCE: Final = _dcm("123110", "Artificial Intelligence")
"""Algorithm family (CID 7162)."""
UNLOCALISED_LEVELS: Final = _local("PN-RPT-001", "Levels not localised on the images")
"""Report-level container of the groups of levels that have no image region (kept out of
"Imaging Measurements", where viewers expect every group to point at an image)."""
DISC_HEIGHT_METHOD: Final = _local("PN-MTH-001", "Disc height from the AI segmentation")
"""Measurement method of the disc height: measured on the model's disc segment."""

SOURCE_IMAGE_FOR_PROCESSING: Final = _dcm("121322", "Source image for image processing operation")
"""Purpose of reference of a SEG frame's source image (CID 7202)."""
SEGMENTATION_DERIVATION: Final = _dcm("113076", "Segmentation")
"""How a SEG frame derives from its source image (CID 7203)."""
BACKGROUND: Final = _dcm("125040", "Background")
"""Category and type of the background segment of a label map SEG."""

STUDY_INSTANCE_UID: Final = _dcm("110180", "Study Instance UID")
AI_SPINE_ANALYSIS: Final = _local("PN-SVC-001", "AI lumbar spine MRI analysis")
"""HL7 OBR-4 universal service identifier of the node's result."""

ANALYSIS_STATUS: Final = _local("PN-STS-001", "AI analysis status")
NOT_ANALYSED: Final = _local("PN-STS-002", "Not analysed")
NOT_ANALYSED_REASON: Final = _local("PN-STS-003", "Reason not analysed")

# --- Quality of the results -----------------------------------------------------------------------

LEVEL_CONFIDENCE: Final = _local("PN-QC-001", "Confidence of the level's AI results")
"""Measurement (unit ``1``, 0..1) of how sure the model is of a level's segmentation."""
QUALITY_CHECK: Final = _local("PN-QC-002", "AI result quality check")
"""Report-level verdict of the model's study check (value: :data:`NEEDS_REVIEW` or
:data:`QUALITY_PASSED`)."""
NEEDS_REVIEW: Final = _local("PN-QC-003", "Low confidence: review")
QUALITY_PASSED: Final = _local("PN-QC-004", "Quality check passed")
REVIEW_REASON: Final = _local("PN-QC-005", "Reason for review")
"""Report-level text: one reason the study check asks for review."""

# --- Comparison with a prior study ----------------------------------------------------------------

CHANGE_CODES: Final = MappingProxyType(
    {
        "disc_bulge": _local("PN-CHG-001", "Change of intervertebral disc bulge since prior"),
        "disc_protrusion": _local(
            "PN-CHG-002", "Change of intervertebral disc protrusion since prior"
        ),
        "disc_extrusion": _local(
            "PN-CHG-003", "Change of intervertebral disc extrusion since prior"
        ),
        "schmorl_node": _local("PN-CHG-004", "Change of Schmorl's node since prior"),
        "vertebral_degeneration": _local(
            "PN-CHG-005", "Change of degenerative endplate and marrow change since prior"
        ),
    }
)
"""Abnormality key -> name of its change since the prior study (value: :data:`CHANGE_VALUES`)."""
CHANGE_VALUES: Final = MappingProxyType(
    {
        "new": _local("PN-CMP-001", "New since prior"),
        "resolved": _local("PN-CMP-002", "Resolved since prior"),
        "unchanged": _local("PN-CMP-003", "Unchanged since prior"),
    }
)
"""Change key (:class:`pacs_node.results.comparison.Change`) -> its coded value."""
DISC_HEIGHT_CHANGE: Final = _local("PN-CMP-004", "Disc height change since prior")
"""Measurement (mm; negative: lower than on the prior) of a level's disc height change."""
COMPARISON: Final = _local("PN-CMP-006", "Comparison with prior study")
"""Report-level text that names the prior study compared with."""
PRIOR_STUDY_INSTANCE_UID: Final = _local("PN-CMP-005", "Prior Study Instance UID")
"""HL7 OBX row of the prior study compared with."""


def structure_code(name: str) -> CodedConcept:
    """Return the SNOMED CT code of a structure.

    Raises:
        ValueError: if ``name`` is not a known structure name.
    """
    try:
        return STRUCTURE_CODES[name]
    except KeyError:
        raise ValueError(f"unknown structure name {name!r}") from None
