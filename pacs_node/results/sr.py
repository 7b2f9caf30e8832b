"""DICOM Comprehensive 3D SR: a TID 1500 measurement report of the per-level results.

Each disc level is located on the analysed images: a TID 1410 group holds its image region (the
disc's outline, or its centre, on one source image), and when the level's disc has a segment in
the SEG a TID 1411 group with the same tracking identifier and UID references that segment. The
level's findings (the five abnormalities as coded present/absent evaluations with their model
probabilities, its measurements and the model's confidence in the level) sit in the segment's
group, or in the region's group when there is no segment. A level without a region is reported
in a report-level container of its own (TID 1501 groups), out of "Imaging Measurements". The
report ends with an impression and the model's quality check, passed or "Low confidence: review"
with its reasons (TID 1500 row 12 "Qualitative Evaluations"). Compared with a prior study, each
group also says which findings are new, resolved or unchanged and how the disc height changed, and
the report names the prior and references its SR. For a study the node skipped,
:func:`build_not_analysed_sr` writes a report that says so and why.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TypedDict

import highdicom as hd
import numpy as np
from highdicom.sr import CodedConcept
from pydicom import Dataset

from pacs_node.results import codes
from pacs_node.results.comparison import DISC_HEIGHT, Comparison, PriorReport
from pacs_node.results.identity import derive_uid
from pacs_node.results.inputs import (
    AI_LABEL,
    AlgorithmInfo,
    LevelConfidence,
    LevelFinding,
    LevelMeasurement,
    LevelRegion,
    ResultContext,
    ResultStatus,
    StudyQuality,
)
from pacs_node.results.seg import segment_tracking_uid
from pacs_node.results.source import with_type2_attributes
from pacs_node.results.stamp import pin_creation
from pacs_node.results.summary import (
    abnormal,
    confidences_by_level,
    impression_text,
    ordered_levels,
)

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


def _append_container(
    report: hd.sr.MeasurementReport, name: CodedConcept, items: Sequence[hd.sr.ContentItem]
) -> None:
    """Add a container of ``items`` to the root of a report."""
    container = hd.sr.ContainerContentItem(
        name=name, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    container.ContentSequence = hd.sr.ContentSequence(items)
    report[0].ContentSequence.append(container)


def _append_evaluations(
    report: hd.sr.MeasurementReport, items: Sequence[hd.sr.ContentItem]
) -> None:
    """Add the TID 1500 row 12 "Qualitative Evaluations" container to a report."""
    _append_container(report, codes.QUALITATIVE_EVALUATIONS, items)


def _segment_numbers(segmentation: Dataset | None) -> dict[str, int]:
    if segmentation is None:
        return {}
    return {str(s.SegmentLabel): int(s.SegmentNumber) for s in segmentation.SegmentSequence}


def _referenced_segment(
    segmentation: Dataset | None, segment_number: int | None
) -> hd.sr.ReferencedSegment | None:
    if segmentation is None or segment_number is None:
        return None
    return hd.sr.ReferencedSegment.from_segmentation(segmentation, segment_number=segment_number)


class _Identity(TypedDict):
    """What every group of a level repeats: which finding it is about and who found it."""

    tracking_identifier: hd.sr.TrackingIdentifier
    finding_category: CodedConcept
    finding_type: CodedConcept
    finding_sites: list[hd.sr.FindingSite]
    algorithm_id: hd.sr.AlgorithmIdentification


class _Content(TypedDict):
    """What a level's findings are: measurements and qualitative evaluations."""

    measurements: list[hd.sr.Measurement] | None
    qualitative_evaluations: list[hd.sr.QualitativeEvaluation] | None


_Group = (
    hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
    | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
    | hd.sr.MeasurementsAndQualitativeEvaluations
)


def _identity(level: str, algorithm: AlgorithmInfo, context: ResultContext) -> _Identity:
    """A fresh copy per group (highdicom items belong to one parent each). The tracking UID is
    the one of the level's SEG segment, so viewers tie the level's groups and segment together."""
    site = codes.DISC_CODES[level]
    return _Identity(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=segment_tracking_uid(context, level), identifier=level
        ),
        finding_category=codes.ANATOMICAL_STRUCTURE,
        finding_type=site,
        finding_sites=[hd.sr.FindingSite(site)],
        algorithm_id=_algorithm_id(algorithm),
    )


def _algorithm_id(algorithm: AlgorithmInfo) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=algorithm.name,
        version=algorithm.version,
        parameters=[f"{k}={v}" for k, v in algorithm.parameters().items()],
        family=codes.ARTIFICIAL_INTELLIGENCE,
    )


def _measurement(m: LevelMeasurement) -> hd.sr.Measurement:
    name, unit = codes.MEASUREMENT_CODES[m.name]
    return hd.sr.Measurement(
        name=name,
        value=m.value,
        unit=unit,
        finding_sites=[hd.sr.FindingSite(codes.structure_code(m.site))],
        method=codes.DISC_HEIGHT_METHOD if m.name == DISC_HEIGHT else None,
    )


def _content(
    level: str,
    findings: Sequence[LevelFinding],
    measurements: Sequence[LevelMeasurement],
    confidence: LevelConfidence | None,
    comparison: Comparison | None,
) -> _Content:
    """The level's measurements (then probabilities, confidence and height change) and its calls
    (then their changes since the prior)."""
    values = [_measurement(m) for m in measurements] + [
        hd.sr.Measurement(
            name=codes.ABNORMALITY_PROBABILITY_CODES[f.abnormality],
            value=f.probability,
            unit=codes.NO_UNITS,
        )
        for f in findings
    ]
    if confidence is not None:
        values.append(
            hd.sr.Measurement(
                name=codes.LEVEL_CONFIDENCE, value=confidence.confidence, unit=codes.NO_UNITS
            )
        )
    changes, height = comparison.at(level) if comparison is not None else ([], None)
    if height is not None:
        values.append(
            hd.sr.Measurement(
                name=codes.DISC_HEIGHT_CHANGE, value=height.change_mm, unit=codes.MILLIMETER
            )
        )
    evaluations = [
        hd.sr.QualitativeEvaluation(
            name=codes.ABNORMALITY_CODES[f.abnormality],
            value=codes.PRESENT if f.present else codes.ABSENT,
        )
        for f in findings
    ] + [
        hd.sr.QualitativeEvaluation(
            name=codes.CHANGE_CODES[c.abnormality], value=codes.CHANGE_VALUES[c.change.value]
        )
        for c in changes
    ]
    return _Content(measurements=values or None, qualitative_evaluations=evaluations or None)


def _image_region(region: LevelRegion) -> hd.sr.ImageRegion:
    return hd.sr.ImageRegion(
        graphic_type=region.graphic_type.value,
        graphic_data=np.asarray(region.points, dtype=float),
        source_image=hd.sr.SourceImageForRegion(
            referenced_sop_class_uid=region.sop_class_uid,
            referenced_sop_instance_uid=region.sop_instance_uid,
        ),
    )


def _level_groups(
    identity: Callable[[], _Identity],
    content: _Content,
    region: LevelRegion | None,
    segment: hd.sr.ReferencedSegment | None,
) -> list[_Group]:
    """A level's groups for "Imaging Measurements", or one TID 1501 group if it has no region.

    A localised level gets a TID 1410 group holding its image region; with a segment in the SEG,
    a TID 1411 group holding the segment reference follows (a TID 1410 group cannot hold both),
    sharing the tracking identifier and UID. The findings go into the group of the segment when
    there is one (they were derived from it), else into the TID 1410 group.
    """
    if region is None:
        if segment is not None:
            raise ValueError("a level with a segment needs an image region")
        return [hd.sr.MeasurementsAndQualitativeEvaluations(**identity(), **content)]
    planar = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        referenced_region=_image_region(region),
        **identity(),
        **(_Content(measurements=None, qualitative_evaluations=None) if segment else content),
    )
    if segment is None:
        return [planar]
    volumetric = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        referenced_segment=segment, **identity(), **content
    )
    return [planar, volumetric]


def _regions_by_level(
    regions: Sequence[LevelRegion], source_images: Sequence[Dataset], levels: Sequence[str]
) -> dict[str, LevelRegion]:
    """The regions by level, each checked to lie on one of the source images.

    Raises:
        ValueError: if a level has two regions, a region is of a level not reported, or its
            image is not one of ``source_images`` (by SOP instance and class).
    """
    sources = {str(i.SOPInstanceUID): str(i.SOPClassUID) for i in source_images}
    by_level: dict[str, LevelRegion] = {}
    for region in regions:
        if region.level in by_level:
            raise ValueError(f"level {region.level} has more than one region")
        if region.level not in levels:
            raise ValueError(f"level {region.level} has a region but no findings")
        if sources.get(region.sop_instance_uid) != region.sop_class_uid:
            raise ValueError(f"the region of {region.level} is not on a source image")
        by_level[region.level] = region
    return by_level


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
    regions: Sequence[LevelRegion] = (),
    previous_versions: Sequence[Dataset] = (),
    comparison: Comparison | None = None,
    confidences: Sequence[LevelConfidence] = (),
    quality: StudyQuality | None = None,
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
            gets a TID 1411 group referencing that segment (and needs a region).
        regions: Where each level lies on ``source_images``: a level with a region gets a
            TID 1410 group holding it; a level without one is reported in the report-level
            "Levels not localised on the images" container instead (viewers such as OHIF fail on
            an "Imaging Measurements" group that points at no image), unless no level has a
            region: then its groups stay in "Imaging Measurements", which TID 1500 requires.
        previous_versions: SR instances this report replaces (for a corrected result).
        comparison: The changes since the patient's prior study: per level, each finding's
            change and the disc height change are added to the level's group, the comparison
            text to the report, and the prior's SR to the Pertinent Other Evidence.
        confidences: The model's confidence per level, a measurement in the level's findings.
        quality: The model's study check: "Qualitative Evaluations" then holds its verdict
            (passed, or "Low confidence: review" with a text per reason) and the summary opens
            with it; None writes no verdict.

    Returns:
        The SR document, one measurement group per level in cranio-caudal order.

    Raises:
        ValueError: if there are no findings and no measurements, a level/abnormality pair occurs
            twice, ``source_images`` is empty, a region does not fit (see
            :func:`_regions_by_level`), a level has a segment but no region, or a confidence is
            of a level not reported or given twice.
    """
    if not source_images:
        raise ValueError("source_images is empty")
    if not findings and not measurements:
        raise ValueError("nothing to report: no findings and no measurements")
    pairs = [(f.level, f.abnormality) for f in findings]
    if len(set(pairs)) != len(pairs):
        raise ValueError("a level/abnormality pair occurs more than once")
    levels = ordered_levels([f.level for f in findings] + [m.level for m in measurements])
    by_level = _regions_by_level(regions, source_images, levels)
    confidence_by_level = confidences_by_level(confidences, levels)
    segment_numbers = _segment_numbers(segmentation)
    localised: list[_Group] = []
    unlocalised: list[_Group] = []
    for level in levels:
        groups = _level_groups(
            functools.partial(_identity, level, algorithm, context),
            _content(
                level,
                [f for f in findings if f.level == level],
                [m for m in measurements if m.level == level],
                confidence_by_level.get(level),
                comparison,
            ),
            by_level.get(level),
            _referenced_segment(segmentation, segment_numbers.get(level)),
        )
        (localised if level in by_level else unlocalised).extend(groups)
    if not localised:  # TID 1500 needs a group in "Imaging Measurements"
        localised, unlocalised = unlocalised, []
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(context, algorithm.name),
        procedure_reported=codes.IMAGING_PROCEDURE,
        imaging_measurements=localised,
        title=codes.IMAGING_MEASUREMENT_REPORT,
    )
    impression = hd.sr.CodeContentItem(
        name=codes.IMPRESSION,
        value=codes.IMAGING_RESULT_ABNORMAL if abnormal(findings) else codes.IMAGING_RESULT_NORMAL,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    evaluations = [
        impression,
        *_quality_items(quality),
        _text(codes.SUMMARY, impression_text(findings, quality)),
    ]
    if comparison is not None:
        evaluations.append(_text(codes.COMPARISON, comparison.summary()))
    _append_evaluations(report, evaluations)
    if unlocalised:
        _append_container(report, codes.UNLOCALISED_LEVELS, [i for g in unlocalised for i in g])
    evidence = [*source_images, *([segmentation] if segmentation is not None else [])]
    sr = _document(evidence, report, context, previous_versions)
    if comparison is not None:
        sr.PertinentOtherEvidenceSequence = [_prior_evidence(comparison.prior)]
    return sr


def _quality_items(quality: StudyQuality | None) -> list[hd.sr.ContentItem]:
    """The study check's verdict as a code, then each reason for review as a text."""
    if quality is None:
        return []
    verdict = hd.sr.CodeContentItem(
        name=codes.QUALITY_CHECK,
        value=codes.NEEDS_REVIEW if quality.needs_review else codes.QUALITY_PASSED,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    return [verdict, *(_text(codes.REVIEW_REASON, reason) for reason in quality.reasons)]


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
