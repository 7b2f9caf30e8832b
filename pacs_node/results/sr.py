"""DICOM Comprehensive 3D SR: a TID 1500 measurement report of the per-level results.

One measurement group (TID 1411, or TID 1501 when the level has no segment) per disc level, holding
the five abnormalities as coded findings (present/absent) with their model probabilities, the
measurements at that level, and a reference to the level's segment in the SEG. The report ends with
an impression (TID 1500 row 12 "Qualitative Evaluations"). Compared with a prior study, each
group also says which findings are new, resolved or unchanged and how the disc height changed, and
the report names the prior and references its SR. For a study the node skipped,
:func:`build_not_analysed_sr` writes a report that says so and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import highdicom as hd
from highdicom.sr import CodedConcept
from pydicom import Dataset

from pacs_node.results import codes
from pacs_node.results.comparison import Comparison, PriorReport
from pacs_node.results.identity import derive_uid
from pacs_node.results.inputs import (
    AI_LABEL,
    AlgorithmInfo,
    LevelFinding,
    LevelMeasurement,
    ResultContext,
    ResultStatus,
)
from pacs_node.results.seg import segment_tracking_uid
from pacs_node.results.source import with_type2_attributes
from pacs_node.results.stamp import pin_creation
from pacs_node.results.summary import abnormal, impression_text, ordered_levels

SERIES_DESCRIPTION = f"AI spine report - {AI_LABEL}"[:64]


def sr_uids(context: ResultContext) -> tuple[str, str]:
    """Return the (Series Instance UID, SOP Instance UID) of the job's SR.

    The instance UID depends on the result status: a final or corrected report is a new instance.
    """
    return (
        derive_uid(context.job_key, "sr/series", prefix=context.uid_prefix),
        derive_uid(
            context.job_key, f"sr/instance/{context.status.value}", prefix=context.uid_prefix
        ),
    )


def _observation_context(context: ResultContext, device_name: str) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derive_uid(context.job_key, "sr/device", prefix=context.uid_prefix),
        name=device_name,
        manufacturer_name=context.manufacturer,
        model_name=context.model_name,
        serial_number=context.device_serial_number,
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DEVICE,
            observer_identifying_attributes=device,
        )
    )


def _text(name: CodedConcept, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )


def _append_evaluations(
    report: hd.sr.MeasurementReport, items: Sequence[hd.sr.ContentItem]
) -> None:
    """Add the TID 1500 row 12 "Qualitative Evaluations" container to a report."""
    container = hd.sr.ContainerContentItem(
        name=codes.QUALITATIVE_EVALUATIONS,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    container.ContentSequence = hd.sr.ContentSequence(items)
    report[0].ContentSequence.append(container)


def _segment_numbers(segmentation: Dataset | None) -> dict[str, int]:
    if segmentation is None:
        return {}
    return {str(s.SegmentLabel): int(s.SegmentNumber) for s in segmentation.SegmentSequence}


class _GroupArgs(TypedDict):
    """Arguments shared by the TID 1411 and TID 1501 measurement group constructors."""

    tracking_identifier: hd.sr.TrackingIdentifier
    finding_category: CodedConcept
    finding_type: CodedConcept
    finding_sites: list[hd.sr.FindingSite]
    algorithm_id: hd.sr.AlgorithmIdentification
    measurements: list[hd.sr.Measurement] | None
    qualitative_evaluations: list[hd.sr.QualitativeEvaluation] | None


def _level_group(
    level: str,
    findings: Sequence[LevelFinding],
    measurements: Sequence[LevelMeasurement],
    algorithm_id: hd.sr.AlgorithmIdentification,
    segmentation: Dataset | None,
    segment_number: int | None,
    context: ResultContext,
    comparison: Comparison | None,
) -> (
    hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
    | hd.sr.MeasurementsAndQualitativeEvaluations
):
    site = codes.DISC_CODES[level]
    values = [
        hd.sr.Measurement(
            name=codes.MEASUREMENT_CODES[m.name][0],
            value=m.value,
            unit=codes.MEASUREMENT_CODES[m.name][1],
            finding_sites=[hd.sr.FindingSite(codes.structure_code(m.site))],
        )
        for m in measurements
    ] + [
        hd.sr.Measurement(
            name=codes.ABNORMALITY_PROBABILITY_CODES[f.abnormality],
            value=f.probability,
            unit=codes.NO_UNITS,
        )
        for f in findings
    ]
    changes, height = comparison.at(level) if comparison is not None else ([], None)
    if height is not None:
        values.append(
            hd.sr.Measurement(
                name=codes.DISC_HEIGHT_CHANGE, value=height.change_mm, unit=codes.MILLIMETER
            )
        )
    common = _GroupArgs(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=segment_tracking_uid(context, level), identifier=level
        ),
        finding_category=codes.ANATOMICAL_STRUCTURE,
        finding_type=site,
        finding_sites=[hd.sr.FindingSite(site)],
        algorithm_id=algorithm_id,
        measurements=values or None,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                name=codes.ABNORMALITY_CODES[f.abnormality],
                value=codes.PRESENT if f.present else codes.ABSENT,
            )
            for f in findings
        ]
        + [
            hd.sr.QualitativeEvaluation(
                name=codes.CHANGE_CODES[c.abnormality], value=codes.CHANGE_VALUES[c.change.value]
            )
            for c in changes
        ]
        or None,
    )
    if segmentation is not None and segment_number is not None:
        return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            referenced_segment=hd.sr.ReferencedSegment.from_segmentation(
                segmentation, segment_number=segment_number
            ),
            **common,
        )
    return hd.sr.MeasurementsAndQualitativeEvaluations(**common)


def _document(
    evidence: Sequence[Dataset],
    report: hd.sr.MeasurementReport,
    context: ResultContext,
    previous_versions: Sequence[Dataset],
) -> hd.sr.Comprehensive3DSR:
    series_uid, sop_uid = sr_uids(context)
    sr = hd.sr.Comprehensive3DSR(
        evidence=[with_type2_attributes(evidence[0]), *evidence[1:]],
        content=report,
        series_instance_uid=series_uid,
        series_number=context.sr_series_number,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=context.manufacturer,
        is_complete=True,
        is_final=context.status is not ResultStatus.PRELIMINARY,
        institution_name=context.institution_name,
        previous_versions=list(previous_versions) or None,
        series_description=SERIES_DESCRIPTION,
        content_date=context.created.date(),
        content_time=context.created.time(),
        coding_schemes=[codes.LOCAL_CODING_SCHEME],
        manufacturer_model_name=context.model_name,
        software_versions=context.software_version,
        device_serial_number=context.device_serial_number,
    )
    pin_creation(sr, context)
    return sr


def build_sr(
    source_images: Sequence[Dataset],
    findings: Sequence[LevelFinding],
    measurements: Sequence[LevelMeasurement],
    *,
    algorithm: AlgorithmInfo,
    context: ResultContext,
    segmentation: Dataset | None = None,
    previous_versions: Sequence[Dataset] = (),
    comparison: Comparison | None = None,
) -> hd.sr.Comprehensive3DSR:
    """Build the TID 1500 measurement report of an analysed study.

    Args:
        source_images: Instances of the analysed series (headers suffice); patient and study
            attributes are copied from the first.
        findings: Abnormality scores per disc level.
        measurements: Measurements per disc level.
        algorithm: The model that produced them.
        context: The job; its status sets the Preliminary Flag (preliminary vs final/corrected).
        segmentation: The job's SEG of the same study: a level whose disc has a segment there
            gets a TID 1411 group referencing that segment.
        previous_versions: SR instances this report replaces (for a corrected result).
        comparison: The changes since the patient's prior study: per level, each finding's
            change and the disc height change are added to the level's group, the comparison
            text to the report, and the prior's SR to the Pertinent Other Evidence.

    Returns:
        The SR document, one measurement group per level in cranio-caudal order.

    Raises:
        ValueError: if there are no findings and no measurements, a level/abnormality pair occurs
            twice, or ``source_images`` is empty.
    """
    if not source_images:
        raise ValueError("source_images is empty")
    if not findings and not measurements:
        raise ValueError("nothing to report: no findings and no measurements")
    pairs = [(f.level, f.abnormality) for f in findings]
    if len(set(pairs)) != len(pairs):
        raise ValueError("a level/abnormality pair occurs more than once")
    segment_numbers = _segment_numbers(segmentation)
    algorithm_id = hd.sr.AlgorithmIdentification(
        name=algorithm.name,
        version=algorithm.version,
        parameters=[f"{k}={v}" for k, v in algorithm.parameters().items()],
        family=codes.ARTIFICIAL_INTELLIGENCE,
    )
    groups = [
        _level_group(
            level,
            [f for f in findings if f.level == level],
            [m for m in measurements if m.level == level],
            algorithm_id,
            segmentation,
            segment_numbers.get(level),
            context,
            comparison,
        )
        for level in ordered_levels([f.level for f in findings] + [m.level for m in measurements])
    ]
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(context, algorithm.name),
        procedure_reported=codes.IMAGING_PROCEDURE,
        imaging_measurements=groups,
        title=codes.IMAGING_MEASUREMENT_REPORT,
    )
    impression = hd.sr.CodeContentItem(
        name=codes.IMPRESSION,
        value=codes.IMAGING_RESULT_ABNORMAL if abnormal(findings) else codes.IMAGING_RESULT_NORMAL,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    evaluations = [impression, _text(codes.SUMMARY, impression_text(findings))]
    if comparison is not None:
        evaluations.append(_text(codes.COMPARISON, comparison.summary()))
    _append_evaluations(report, evaluations)
    evidence = [*source_images, *([segmentation] if segmentation is not None else [])]
    sr = _document(evidence, report, context, previous_versions)
    if comparison is not None:
        sr.PertinentOtherEvidenceSequence = [_prior_evidence(comparison.prior)]
    return sr


def _prior_evidence(prior: PriorReport) -> Dataset:
    """The prior study's SR as a Pertinent Other Evidence item (Hierarchical SOP Instance
    Reference: study, series, instance)."""
    instance = Dataset()
    instance.ReferencedSOPClassUID = prior.sr_sop_class_uid
    instance.ReferencedSOPInstanceUID = prior.sr_sop_instance_uid
    series = Dataset()
    series.SeriesInstanceUID = prior.sr_series_instance_uid
    series.ReferencedSOPSequence = [instance]
    study = Dataset()
    study.StudyInstanceUID = prior.study_instance_uid
    study.ReferencedSeriesSequence = [series]
    return study


def build_not_analysed_sr(
    source_study_header: Dataset, reason: str, *, context: ResultContext
) -> hd.sr.Comprehensive3DSR:
    """Build the report of a study the node did not analyse (out of intended use, no series...).

    Args:
        source_study_header: One received instance of the study (any SOP class; the header
            suffices); patient and study attributes are copied from it (empty where it lacks a
            Type 2 one) and it is listed as evidence.
        reason: Why the study was not analysed, for the reader (no patient data).
        context: The job.

    Returns:
        A TID 1500 report with one group stating "Not analysed" and the reason as text.

    Raises:
        ValueError: if ``reason`` is empty.
    """
    if not reason.strip():
        raise ValueError("reason must not be empty")
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derive_uid(context.job_key, "sr/not-analysed", prefix=context.uid_prefix),
            identifier="not analysed",
        ),
        finding_sites=[hd.sr.FindingSite(codes.LUMBAR_SPINE)],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=codes.ANALYSIS_STATUS, value=codes.NOT_ANALYSED)
        ],
    )
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(context, context.model_name),
        procedure_reported=codes.IMAGING_PROCEDURE,
        imaging_measurements=[group],
        title=codes.IMAGING_MEASUREMENT_REPORT,
    )
    _append_evaluations(
        report,
        [
            _text(codes.NOT_ANALYSED_REASON, reason),
            _text(codes.SUMMARY, f"Not analysed: {reason}. {AI_LABEL}."),
        ],
    )
    return _document([source_study_header], report, context, ())
