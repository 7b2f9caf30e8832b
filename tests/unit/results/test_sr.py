"""TID 1500 SR builder: round trip with highdicom, dciodvfy, dsrdump, edge cases."""

from __future__ import annotations

import copy
import io
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import pytest
from pydicom import Dataset

from models.labels import load_label_scheme
from pacs_node.results import codes
from pacs_node.results.comparison import read_prior_report
from pacs_node.results.inputs import (
    AI_LABEL,
    LevelConfidence,
    LevelFinding,
    LevelMeasurement,
    LevelRegion,
    RegionShape,
    ResultContext,
    ResultStatus,
    StudyQuality,
)
from pacs_node.results.seg import build_seg, segment_tracking_uid
from pacs_node.results.sr import build_not_analysed_sr, build_sr
from pacs_node.results.sr_findings import levels_from_sr
from worker.pipeline import level_regions

RoundTrip = Callable[[Dataset], Dataset]
ABNORMALITIES = tuple(codes.ABNORMALITY_CODES)


def _findings(levels: tuple[str, ...], positive: tuple[str, str]) -> list[LevelFinding]:
    return [
        LevelFinding(
            level, key, 0.91 if (level, key) == positive else 0.05, (level, key) == positive
        )
        for level in levels
        for key in ABNORMALITIES
    ]


@pytest.fixture
def findings() -> list[LevelFinding]:
    """L4/L5 protrusion; everything else absent. T9/T10 has no segment in the phantom."""
    return _findings(("L5/S1", "T9/T10", "L4/L5"), ("L4/L5", "disc_protrusion"))


@pytest.fixture
def measurements() -> list[LevelMeasurement]:
    """Disc heights and a canal diameter."""
    return [
        LevelMeasurement("L4/L5", "disc_height", 8.5, "mm"),
        LevelMeasurement("L5/S1", "disc_height", 7.25, "mm"),
        LevelMeasurement("L4/L5", "canal_diameter", 12.0, "mm", structure="canal"),
    ]


@pytest.fixture
def seg(t2_series, structure_values, algorithm, context) -> hd.seg.Segmentation:
    """The SEG the SR references."""
    return build_seg(
        t2_series.images,
        t2_series.label_map,
        structure_values,
        algorithm=algorithm,
        context=context,
    )


@pytest.fixture
def regions(t2_series) -> list[LevelRegion]:
    """Where the reported levels lie: L4/L5 and L5/S1 outlined; T9/T10 (and its vertebrae) are
    not in the phantom, so it has none."""
    return level_regions(
        t2_series.images, t2_series.label_map, ("L5/S1", "T9/T10", "L4/L5"), load_label_scheme()
    )


def _report(sr: Dataset) -> tuple[Dataset, hd.sr.MeasurementReport]:
    """Encode, then read back with highdicom's SR reader."""
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    document = hd.sr.srread(buffer)
    assert isinstance(document, hd.sr.Comprehensive3DSR)
    assert isinstance(document.content, hd.sr.MeasurementReport)
    return document, document.content


def test_round_trip_groups_findings_and_segment_references(
    t2_series, findings, measurements, seg, regions, algorithm, context
) -> None:
    sr = build_sr(
        t2_series.images,
        findings,
        measurements,
        algorithm=algorithm,
        context=context,
        segmentation=seg,
        regions=regions,
    )
    read, report = _report(sr)
    planar = report.get_planar_roi_measurement_groups()
    volumetric = report.get_volumetric_roi_measurement_groups()
    # Cranio-caudal order; T9/T10 has no segment and no region: it is reported apart.
    assert [g.tracking_identifier for g in planar] == ["L4/L5", "L5/S1"]
    assert [g.tracking_identifier for g in volumetric] == ["L4/L5", "L5/S1"]
    assert report.get_image_measurement_groups() == []
    segment_numbers = {s.SegmentLabel: s.SegmentNumber for s in seg.SegmentSequence}
    for region_group, group in zip(planar, volumetric, strict=True):
        level = group.tracking_identifier
        # The region's group carries the identity only; the findings sit with the segment.
        assert region_group.tracking_uid == group.tracking_uid
        assert region_group.finding_type == codes.DISC_CODES[level]
        assert not region_group.get_measurements()
        called = {e.name.value for e in region_group.get_qualitative_evaluations()}
        assert called.isdisjoint(c.value for c in codes.ABNORMALITY_CODES.values())
        assert group.finding_type == codes.DISC_CODES[level]
        assert group.finding_sites[0].value == codes.DISC_CODES[level]
        assert (
            group.tracking_uid == seg.get_segment_description(segment_numbers[level]).tracking_uid
        )
        ref = group.referenced_segment[0].ReferencedSOPSequence[0]
        assert ref.ReferencedSOPInstanceUID == seg.SOPInstanceUID
        assert ref.ReferencedSegmentNumber == segment_numbers[level]
        evaluations = {(e.name.value, e.value.value) for e in group.get_qualitative_evaluations()}
        for key, code in codes.ABNORMALITY_CODES.items():
            present = (level, key) == ("L4/L5", "disc_protrusion")
            assert (code.value, (codes.PRESENT if present else codes.ABSENT).value) in evaluations
        values = {m.name.value: m.value for m in group.get_measurements()}
        probability = values[codes.ABNORMALITY_PROBABILITY_CODES["disc_protrusion"].value]
        assert probability == pytest.approx(0.91 if level == "L4/L5" else 0.05)
    l4l5 = {m.name.value: m for m in volumetric[0].get_measurements()}
    assert l4l5["121207"].value == pytest.approx(8.5)
    assert l4l5["121207"].unit == codes.MILLIMETER
    assert l4l5["81827009"].finding_sites[0].value == codes.CANAL
    # Evidence: the source series and the SEG, in the same study.
    evidence = {
        item.ReferencedSOPInstanceUID
        for study in read.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert evidence == {i.SOPInstanceUID for i in t2_series.images} | {seg.SOPInstanceUID}


def _content(item: Dataset) -> list[Dataset]:
    return list(item.get("ContentSequence", []))


def _named(items: list[Dataset], code: str) -> list[Dataset]:
    return [i for i in items if i.ConceptNameCodeSequence[0].CodeValue == code]


def test_every_imaging_measurement_has_a_region_on_a_source_image(
    t2_series, findings, measurements, seg, regions, algorithm, context, roundtrip: RoundTrip
) -> None:
    """What OHIF needs: merged by Tracking Unique Identifier, each measurement's groups hold a
    SCOORD whose selected-from image is an instance of the analysed series."""
    sr = roundtrip(
        build_sr(
            t2_series.images,
            findings,
            measurements,
            algorithm=algorithm,
            context=context,
            segmentation=seg,
            regions=regions,
        )
    )
    (imaging,) = _named(_content(sr), "126010")
    merged: dict[str, list[Dataset]] = {}
    for group in _named(_content(imaging), "125007"):
        (uid,) = _named(_content(group), "112040")
        merged.setdefault(uid.UID, []).extend(_content(group))
    assert len(merged) == 2
    sources = {i.SOPInstanceUID: i.SOPClassUID for i in t2_series.images}
    for level, items in zip(("L4/L5", "L5/S1"), merged.values(), strict=True):
        (scoord,) = [i for i in items if i.ValueType in ("SCOORD", "SCOORD3D")]
        assert (scoord.ValueType, scoord.GraphicType) == ("SCOORD", "POLYLINE")
        assert list(scoord.GraphicData[:2]) == list(scoord.GraphicData[-2:])  # closed
        (image,) = _content(scoord)
        assert image.RelationshipType == "SELECTED FROM"
        reference = image.ReferencedSOPSequence[0]
        assert sources[reference.ReferencedSOPInstanceUID] == reference.ReferencedSOPClassUID
        region = next(r for r in regions if r.level == level)
        assert reference.ReferencedSOPInstanceUID == region.sop_instance_uid
        assert any(
            i.ValueType == "IMAGE" and "ReferencedSegmentNumber" in i.ReferencedSOPSequence[0]
            for i in items
        )
    # The level without a region is outside "Imaging Measurements", in its own container.
    (apart,) = _named(_content(sr), codes.UNLOCALISED_LEVELS.value)
    (group,) = _content(apart)
    (identifier,) = _named(_content(group), "112039")
    assert identifier.TextValue == "T9/T10"
    assert not [i for i in _content(group) if i.ValueType in ("SCOORD", "SCOORD3D")]


def test_readers_find_every_level_whatever_its_groups(
    t2_series, findings, measurements, seg, regions, algorithm, context, tmp_path: Path
) -> None:
    path = tmp_path / "sr.dcm"
    build_sr(
        t2_series.images,
        [*findings, LevelFinding("L3/L4", "disc_bulge", 0.7, True)],
        [*measurements, LevelMeasurement("T9/T10", "disc_height", 6.0, "mm")],
        algorithm=algorithm,
        context=context,
        segmentation=seg,
        regions=[
            *regions,
            LevelRegion(
                "L3/L4",
                t2_series.images[0].SOPInstanceUID,
                t2_series.images[0].SOPClassUID,
                ((20.0, 30.5),),
                RegionShape.POINT,
            ),
        ],
    ).save_as(path, enforce_file_format=True)
    levels = levels_from_sr(path)
    assert set(levels.findings) == {"L3/L4", "L4/L5", "L5/S1", "T9/T10"}
    assert levels.findings["L4/L5"] == {k: k == "disc_protrusion" for k in ABNORMALITIES}
    assert levels.findings["T9/T10"] == dict.fromkeys(ABNORMALITIES, False)
    assert levels.findings["L3/L4"] == {"disc_bulge": True}
    assert levels.disc_heights == {"L4/L5": 8.5, "L5/S1": 7.25, "T9/T10": 6.0}
    assert read_prior_report(path).findings == levels.findings
    # L3/L4 has a region but no segment: its findings sit in its TID 1410 group.
    report = hd.sr.srread(path).content
    (l3l4,) = [
        g for g in report.get_planar_roi_measurement_groups() if g.tracking_identifier == "L3/L4"
    ]
    assert l3l4.roi.graphic_type == hd.sr.GraphicTypeValues.POINT
    assert l3l4.get_qualitative_evaluations()
    assert l3l4.tracking_uid == segment_tracking_uid(context, "L3/L4")


def test_region_and_segment_inputs_are_checked(
    t1_series, t2_series, findings, seg, regions, algorithm, context
) -> None:
    def build(**kwargs: object) -> None:
        build_sr(t2_series.images, findings, [], algorithm=algorithm, context=context, **kwargs)

    with pytest.raises(ValueError, match="needs an image region"):
        build(segmentation=seg)
    with pytest.raises(ValueError, match="more than one region"):
        build(segmentation=seg, regions=[*regions, regions[0]])
    other = t1_series.images[0]
    elsewhere = LevelRegion("L4/L5", other.SOPInstanceUID, other.SOPClassUID, ((1, 1),), "POINT")
    with pytest.raises(ValueError, match="not on a source image"):
        build(regions=[elsewhere])
    unreported = LevelRegion("L1/L2", other.SOPInstanceUID, other.SOPClassUID, ((1, 1),), "POINT")
    with pytest.raises(ValueError, match="no findings"):
        build(regions=[unreported])


def _text_items(sr: Dataset) -> dict[str, str]:
    root = sr.ContentSequence
    container = next(i for i in root if i.ConceptNameCodeSequence[0].CodeValue == "C0034375")
    return {
        i.ConceptNameCodeSequence[0].CodeMeaning: (
            i.TextValue if i.ValueType == "TEXT" else i.ConceptCodeSequence[0].CodeValue
        )
        for i in container.ContentSequence
    }


def test_impression_summarises_findings(
    t2_series, findings, measurements, seg, regions, algorithm, context
) -> None:
    sr = build_sr(
        t2_series.images,
        findings,
        measurements,
        algorithm=algorithm,
        context=context,
        segmentation=seg,
        regions=regions,
    )
    items = _text_items(sr)
    assert items["Impression"] == codes.IMAGING_RESULT_ABNORMAL.value
    assert items["Summary"].startswith("L4/L5: intervertebral disc protrusion (p=0.91).")
    assert AI_LABEL in items["Summary"]
    normal = build_sr(
        t2_series.images, _findings(("L4/L5",), ("", "")), [], algorithm=algorithm, context=context
    )
    assert _text_items(normal)["Impression"] == codes.IMAGING_RESULT_NORMAL.value
    assert "No abnormality detected at the 1 level" in _text_items(normal)["Summary"]


@pytest.mark.parametrize(
    ("status", "flag"),
    [
        (ResultStatus.PRELIMINARY, "PRELIMINARY"),
        (ResultStatus.FINAL, "FINAL"),
        (ResultStatus.CORRECTED, "FINAL"),
    ],
)
def test_status_sets_preliminary_flag_and_identity(
    t2_series, findings, algorithm, context, status: ResultStatus, flag: str
) -> None:
    ctx = ResultContext(
        job_key=context.job_key, created=context.created, software_version="0.1.0", status=status
    )
    sr = build_sr(t2_series.images, findings, [], algorithm=algorithm, context=ctx)
    assert sr.PreliminaryFlag == flag
    assert sr.CompletionFlag == "COMPLETE"
    again = build_sr(t2_series.images, findings, [], algorithm=algorithm, context=ctx)
    assert again.SOPInstanceUID == sr.SOPInstanceUID
    other = build_sr(t2_series.images, findings, [], algorithm=algorithm, context=context)
    assert (other.SOPInstanceUID == sr.SOPInstanceUID) == (status is context.status)
    assert other.SeriesInstanceUID == sr.SeriesInstanceUID


def test_corrected_report_lists_its_predecessor(t2_series, findings, algorithm, context) -> None:
    first = build_sr(t2_series.images, findings, [], algorithm=algorithm, context=context)
    corrected_ctx = ResultContext(
        job_key=context.job_key,
        created=context.created,
        software_version="0.1.0",
        status=ResultStatus.CORRECTED,
    )
    corrected = build_sr(
        t2_series.images,
        findings,
        [],
        algorithm=algorithm,
        context=corrected_ctx,
        previous_versions=[first],
    )
    predecessor = corrected.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID


def test_rebuild_is_byte_identical(
    t2_series, findings, measurements, seg, regions, algorithm, context, tmp_path: Path
) -> None:
    paths = []
    for name in ("a.dcm", "b.dcm"):
        paths.append(tmp_path / name)
        build_sr(
            t2_series.images,
            findings,
            measurements,
            algorithm=algorithm,
            context=context,
            segmentation=seg,
            regions=regions,
        ).save_as(paths[-1], enforce_file_format=True)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_patient_and_study_carry_over_and_nothing_else_leaks(
    t2_series, findings, algorithm, context, roundtrip: RoundTrip
) -> None:
    sr = roundtrip(build_sr(t2_series.images, findings, [], algorithm=algorithm, context=context))
    source = t2_series.images[0]
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "AccessionNumber",
        "ReferringPhysicianName",
    ):
        assert sr[keyword].value == source[keyword].value, keyword
    assert "ImageComments" not in sr and "OperatorsName" not in sr and 0x00091010 not in sr
    assert AI_LABEL in sr.SeriesDescription
    schemes = {item.CodingSchemeDesignator for item in sr.CodingSchemeIdentificationSequence}
    assert codes.LOCAL_SCHEME in schemes


def _dsrdump(path: Path) -> str:
    if shutil.which("dsrdump") is None:
        pytest.skip("dsrdump (DCMTK) is not installed")
    run = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_sr_passes_dciodvfy_and_dsrdump(
    t2_series, findings, measurements, seg, regions, algorithm, context, tmp_path: Path, dciodvfy
) -> None:
    path = tmp_path / "sr.dcm"
    build_sr(
        t2_series.images,
        findings,
        measurements,
        algorithm=algorithm,
        context=context,
        segmentation=seg,
        regions=regions,
    ).save_as(path, enforce_file_format=True)
    assert dciodvfy(path) == []
    dump = _dsrdump(path)
    assert "Imaging Measurement Report" in dump
    assert '"Intervertebral disc protrusion")=(52101004,SCT,"Present")' in dump


def test_not_analysed_report(
    t2_series, context, roundtrip: RoundTrip, tmp_path: Path, dciodvfy
) -> None:
    reason = "no sagittal T2 series in the study"
    sr = build_not_analysed_sr(t2_series.images[0], reason, context=context)
    items = _text_items(roundtrip(sr))
    assert items["Reason not analysed"] == reason
    assert items["Summary"].startswith(f"Not analysed: {reason}.")
    report = hd.sr.MeasurementReport.from_sequence([sr])
    (group,) = report.get_image_measurement_groups()
    evaluation = group.get_qualitative_evaluations()[0]
    assert (evaluation.name, evaluation.value) == (codes.ANALYSIS_STATUS, codes.NOT_ANALYSED)
    assert sr.PatientID == t2_series.images[0].PatientID
    path = tmp_path / "na.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy(path) == []
    assert "Not analysed" in _dsrdump(path)


def test_not_analysed_report_of_a_header_without_type2_attributes(
    t2_series, context, roundtrip: RoundTrip, tmp_path: Path, dciodvfy
) -> None:
    header = copy.deepcopy(t2_series.images[0])
    for keyword in ("PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber"):
        delattr(header, keyword)
    sr = roundtrip(build_not_analysed_sr(header, "modality CT is not MR", context=context))
    assert (sr.PatientBirthDate, sr.PatientSex, sr.StudyID, sr.AccessionNumber) == ("",) * 4
    assert sr.PatientID == header.PatientID
    assert "PatientBirthDate" not in header  # the caller's header is left as it was
    path = tmp_path / "na.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy(path) == []


def test_report_of_sources_without_type2_attributes(
    t2_series, findings, measurements, algorithm, context, roundtrip: RoundTrip
) -> None:
    images = [copy.deepcopy(image) for image in t2_series.images]
    for image in images:
        del image.PatientBirthDate, image.AccessionNumber
    sr = build_sr(images, findings, measurements, algorithm=algorithm, context=context)
    read = roundtrip(sr)
    assert (read.PatientBirthDate, read.AccessionNumber) == ("", "")
    assert read.PatientID == images[0].PatientID


def test_invalid_inputs_are_rejected(t2_series, findings, algorithm, context) -> None:
    with pytest.raises(ValueError, match="nothing to report"):
        build_sr(t2_series.images, [], [], algorithm=algorithm, context=context)
    with pytest.raises(ValueError, match="more than once"):
        build_sr(
            t2_series.images, [*findings, findings[0]], [], algorithm=algorithm, context=context
        )
    with pytest.raises(ValueError):
        build_sr([], findings, [], algorithm=algorithm, context=context)
    with pytest.raises(ValueError):
        build_not_analysed_sr(t2_series.images[0], "  ", context=context)


REVIEW = StudyQuality(True, ("only 3 of 5 lumbar discs found", "sacrum not in view"))
CONFIDENCES = [
    LevelConfidence("L4/L5", 0.934),
    LevelConfidence("L5/S1", 0.612),
    LevelConfidence("T9/T10", 0.25),
]


def _evaluations(sr: Dataset) -> list[tuple[str, str]]:
    """(concept meaning, code value or text) of each "Qualitative Evaluations" item, in order."""
    container = next(
        i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "C0034375"
    )
    return [
        (
            i.ConceptNameCodeSequence[0].CodeMeaning,
            i.TextValue if i.ValueType == "TEXT" else i.ConceptCodeSequence[0].CodeValue,
        )
        for i in container.ContentSequence
    ]


def test_study_needing_review_says_so_with_each_reason_and_levels_carry_confidence(
    t2_series, findings, measurements, seg, regions, algorithm, context, tmp_path: Path, dciodvfy
) -> None:
    path = tmp_path / "review.dcm"
    build_sr(
        t2_series.images,
        findings,
        measurements,
        algorithm=algorithm,
        context=context,
        segmentation=seg,
        regions=regions,
        confidences=CONFIDENCES,
        quality=REVIEW,
    ).save_as(path, enforce_file_format=True)
    assert dciodvfy(path) == []
    read, report = _report(hd.sr.srread(path))
    items = _evaluations(read)
    assert items[:4] == [
        ("Impression", codes.IMAGING_RESULT_ABNORMAL.value),
        ("AI result quality check", codes.NEEDS_REVIEW.value),
        ("Reason for review", "only 3 of 5 lumbar discs found"),
        ("Reason for review", "sacrum not in view"),
    ]
    summary = dict(items)["Summary"]
    assert summary.startswith(
        "Low confidence: review (only 3 of 5 lumbar discs found; sacrum not in view). L4/L5: "
    )
    # Each level's confidence sits with its findings: the segment's group, or the TID 1501 group
    # of the level not localised.
    groups = [
        *report.get_volumetric_roi_measurement_groups(),
        *levels_container_groups(read),
    ]
    confidences = {}
    for group in groups:
        (measurement,) = group.get_measurements(name=codes.LEVEL_CONFIDENCE)
        assert measurement.unit == codes.NO_UNITS
        confidences[group.tracking_identifier] = float(measurement.value)
    assert confidences == {"L4/L5": 0.934, "L5/S1": 0.612, "T9/T10": 0.25}
    assert all(not g.get_measurements() for g in report.get_planar_roi_measurement_groups())
    dump = _dsrdump(path)
    assert '(PN-QC-003,99PACSNODE,"Low confidence: review")' in dump


def levels_container_groups(sr: Dataset) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    """The TID 1501 groups of the "Levels not localised on the images" container."""
    (container,) = [
        i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "PN-RPT-001"
    ]
    return [
        hd.sr.MeasurementsAndQualitativeEvaluations.from_sequence([group])
        for group in container.ContentSequence
    ]


def test_study_passing_the_quality_check_says_so_once(
    t2_series, findings, algorithm, context, roundtrip: RoundTrip
) -> None:
    sr = build_sr(
        t2_series.images,
        findings,
        [],
        algorithm=algorithm,
        context=context,
        quality=StudyQuality(False),
    )
    items = _evaluations(roundtrip(sr))
    assert [name for name, _ in items] == ["Impression", "AI result quality check", "Summary"]
    assert items[1][1] == codes.QUALITY_PASSED.value
    assert items[2][1].startswith("L4/L5: intervertebral disc protrusion")
    without = _evaluations(
        build_sr(t2_series.images, findings, [], algorithm=algorithm, context=context)
    )
    assert [name for name, _ in without] == ["Impression", "Summary"]


def test_confidences_must_be_of_levels_reported_once(
    t2_series, findings, algorithm, context
) -> None:
    for confidences, message in (
        ([LevelConfidence("L1/L2", 0.9)], "no findings"),
        ([LevelConfidence("L4/L5", 0.9), LevelConfidence("L4/L5", 0.8)], "more than one"),
    ):
        with pytest.raises(ValueError, match=message):
            build_sr(
                t2_series.images,
                findings,
                [],
                algorithm=algorithm,
                context=context,
                confidences=confidences,
            )


@pytest.mark.parametrize(
    "make",
    [
        lambda: LevelConfidence("L6/S1", 0.5),
        lambda: LevelConfidence("L4/L5", 1.01),
        lambda: LevelConfidence("L4/L5", float("nan")),
        lambda: StudyQuality(True),
        lambda: StudyQuality(False, ("sacrum not in view",)),
        lambda: StudyQuality(True, ("",)),
        lambda: StudyQuality(True, ("two\nlines",)),
        lambda: StudyQuality(True, ("x" * 201,)),
        lambda: LevelFinding("L6/S1", "disc_bulge", 0.5, True),
        lambda: LevelFinding("L4/L5", "stenosis", 0.5, True),
        lambda: LevelFinding("L4/L5", "disc_bulge", 1.5, True),
        lambda: LevelMeasurement("L4/L5", "disc_height", 8.0, "cm"),
        lambda: LevelMeasurement("L4/L5", "disc_height", float("nan"), "mm"),
        lambda: LevelMeasurement("L4/L5", "weight", 8.0, "mm"),
        lambda: LevelRegion("L6/S1", "1.2.3", "1.2.4", ((1.0, 1.0),), RegionShape.POINT),
        lambda: LevelRegion("L4/L5", "1.02.3", "1.2.4", ((1.0, 1.0),), RegionShape.POINT),
        lambda: LevelRegion("L4/L5", "1.2.3", "1.2.4", ((1.0, 1.0),), "CIRCLE"),
        lambda: LevelRegion("L4/L5", "1.2.3", "1.2.4", ((1.0, 1.0), (2.0, 2.0)), "POINT"),
        lambda: LevelRegion("L4/L5", "1.2.3", "1.2.4", ((-1.0, 1.0),), RegionShape.POINT),
        lambda: LevelRegion("L4/L5", "1.2.3", "1.2.4", ((0, 0), (4, 0), (4, 2)), "POLYLINE"),
        lambda: LevelRegion("L4/L5", "1.2.3", "1.2.4", ((0, 0), (4, 0), (0, 0)), "POLYLINE"),
    ],
)
def test_inputs_validate_on_construction(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()


def test_evidence_spans_every_analysed_series(
    t1_series, t2_series, findings, seg, regions, algorithm, context
) -> None:
    sr = build_sr(
        [*t1_series.images, *t2_series.images],
        findings,
        [],
        algorithm=algorithm,
        context=context,
        segmentation=seg,
        regions=regions,
    )
    (study,) = sr.CurrentRequestedProcedureEvidenceSequence
    assert study.StudyInstanceUID == t2_series.images[0].StudyInstanceUID
    series = {
        s.SeriesInstanceUID: len(s.ReferencedSOPSequence) for s in study.ReferencedSeriesSequence
    }
    assert series == {
        t1_series.images[0].SeriesInstanceUID: len(t1_series.images),
        t2_series.images[0].SeriesInstanceUID: len(t2_series.images),
        seg.SeriesInstanceUID: 1,
    }
