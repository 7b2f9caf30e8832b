"""The pipeline with a fake predictor: one prediction, valid results, identical on re-run."""

from __future__ import annotations

import datetime
import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import Comprehensive3DSRStorage

from models.labels import load_label_scheme
from pacs_node.results import codes
from pacs_node.results.identity import derive_control_id
from pacs_node.results.inputs import RegionShape, ResultContext, StudyQuality
from tests.helpers.dicom_factory import StudySpec, write_study
from tests.unit.results.conftest import dciodvfy  # noqa: F401  (fixture)
from tests.unit.worker.conftest import (
    REVIEW,
    FakePrediction,
    FakePredictor,
    FakeQuality,
    assert_not_analysed_sr,
    series_files,
)
from worker.io import read_series
from worker.phantom import WrittenStudy
from worker.pipeline import (
    analyse_study,
    confidences_of,
    findings_of,
    level_regions,
    measurements_of,
    quality_of,
    report_not_analysed,
)

CONTEXT = ResultContext(
    job_key="job-7",
    created=datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    software_version="test",
)


def test_results_are_built_once_per_study_and_reference_the_source(
    phantom_study: WrittenStudy,
) -> None:
    predictor = FakePredictor()
    bundle = analyse_study(series_files(phantom_study), predictor, CONTEXT)
    assert len(predictor.calls) == 1
    assert set(predictor.calls[0]) == {"SAG_T2", "SAG_T1"}
    assert [r.kind for r in bundle.results] == ["seg", "sr", "oru"]
    assert set(bundle.timings) == {"load", "inference", "encode"}
    seg_result, sr_result, oru = bundle.results
    seg = hd.seg.segread(io.BytesIO(seg_result.data))
    assert seg.SOPInstanceUID == seg_result.sop_instance_uid
    assert [d.segment_label for d in seg.SegmentSequence] == ["L5", "L4", "L4/L5"]
    t2 = next(s for s in phantom_study.series if s.role == "SAG_T2")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == t2.series_instance_uid
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "fake-model"
    sr = pydicom.dcmread(io.BytesIO(sr_result.data))
    assert sr.SOPInstanceUID == sr_result.sop_instance_uid
    assert sr.StudyInstanceUID == phantom_study.study_instance_uid
    text = oru.data.decode()
    assert oru.channel == "hl7" and seg_result.channel == "dicom"
    assert f"|{oru.control_id}|" in text.split("\r")[0]
    assert "L4/L5" in text


def test_rerun_gives_byte_identical_results(phantom_study: WrittenStudy) -> None:
    first = analyse_study(series_files(phantom_study), FakePredictor(), CONTEXT)
    again = analyse_study(series_files(phantom_study), FakePredictor(), CONTEXT)
    assert [r.data for r in first.results] == [r.data for r in again.results]
    other_job = ResultContext(job_key="job-8", created=CONTEXT.created, software_version="test")
    third = analyse_study(series_files(phantom_study), FakePredictor(), other_job)
    assert first.results[0].sop_instance_uid != third.results[0].sop_instance_uid
    other_weights = FakePredictor(checkpoint_sha256="1" * 64)
    fourth = analyse_study(series_files(phantom_study), other_weights, CONTEXT)
    assert {r.sop_instance_uid for r in first.results}.isdisjoint(
        r.sop_instance_uid for r in fourth.results if r.sop_instance_uid
    )
    assert first.results[-1].control_id != fourth.results[-1].control_id


def test_study_without_sag_t2_or_crashing_model_raises(phantom_study: WrittenStudy) -> None:
    files = series_files(phantom_study)
    del files["SAG_T2"]
    predictor = FakePredictor()
    with pytest.raises(ValueError, match="no SAG_T2"):
        analyse_study(files, predictor, CONTEXT)
    assert predictor.calls == []
    crashing = FakePredictor(error=RuntimeError("CUDA error: device-side assert"))
    with pytest.raises(RuntimeError, match="device-side"):
        analyse_study(series_files(phantom_study), crashing, CONTEXT)


def test_key_images_when_a_destination_needs_them(phantom_study: WrittenStudy) -> None:
    bundle = analyse_study(series_files(phantom_study), FakePredictor(), CONTEXT, key_images=True)
    kinds = [r.kind for r in bundle.results]
    assert kinds[0] == "seg" and kinds[-2:] == ["sr", "oru"]
    key_images = [r for r in bundle.results if r.kind == "key_image"]
    assert key_images
    sc = pydicom.dcmread(io.BytesIO(key_images[0].data))
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert sc.BurnedInAnnotation == "YES"
    assert sc.StudyInstanceUID == phantom_study.study_instance_uid


def test_study_out_of_intended_use_gets_one_not_analysed_sr(tmp_path: Path) -> None:
    reason = "body part KNEE is not the lumbar spine"
    files = write_study(
        StudySpec(seed=3, series=("T2 TSE SAG", "T2 TSE AX"), body_part="KNEE"), tmp_path
    )
    bundle = report_not_analysed(files, reason, CONTEXT)
    assert bundle.algorithm is bundle.quality is None and set(bundle.timings) == {"encode"}
    (sr,) = bundle.results
    assert (sr.kind, sr.channel, sr.sop_class_uid) == ("sr", "dicom", Comprehensive3DSRStorage)
    assert_not_analysed_sr(sr.data, pydicom.dcmread(files[0]), reason)
    assert report_not_analysed(files, reason, CONTEXT).results == bundle.results  # identical
    sr_again, oru = report_not_analysed(files, reason, CONTEXT, notify=True).results
    assert sr_again == sr and (oru.kind, oru.channel) == ("oru", "hl7")
    assert oru.control_id == derive_control_id(CONTEXT.job_key, f"oru/{CONTEXT.status.value}")
    rows = [r.split("|") for r in oru.data.decode().split("\r") if r.startswith("OBX")]
    status = codes.NOT_ANALYSED
    assert [r[5] for r in rows[1:]] == [
        f"{status.value}^{status.meaning}^{codes.LOCAL_SCHEME}",
        reason,
    ]
    with pytest.raises(ValueError, match="no instance"):
        report_not_analysed([], reason, CONTEXT)


def test_reported_values_carry_the_model_precision_not_fifteen_digits() -> None:
    prediction = FakePrediction(
        label_map=np.zeros((1, 2, 2), dtype=np.uint8),
        level_probabilities={"L4/L5": {"disc_bulge": 0.123456789}},
        level_calls={"L4/L5": {"disc_bulge": True}},
        measurements={"L4/L5": {"disc_height_mm": 4.123456789012345}},
    )
    (finding,) = findings_of(prediction)
    (measurement,) = measurements_of(prediction)
    assert (finding.probability, finding.present) == (0.1235, True)
    assert (measurement.name, measurement.value, measurement.unit) == ("disc_height", 4.1, "mm")


def test_a_study_the_model_doubts_is_marked_for_review_in_every_result(
    phantom_study: WrittenStudy,
    tmp_path: Path,
    dciodvfy: Callable[[Path], list[str]],  # noqa: F811  (the fixture)
) -> None:
    bundle = analyse_study(series_files(phantom_study), FakePredictor(quality=REVIEW), CONTEXT)
    assert bundle.quality == StudyQuality(True, REVIEW.reasons)
    _, sr_result, oru = bundle.results
    path = tmp_path / "sr.dcm"
    path.write_bytes(sr_result.data)
    assert dciodvfy(path) == []
    sr = pydicom.dcmread(path)
    report = hd.sr.srread(path).content
    (group,) = report.get_volumetric_roi_measurement_groups()
    (confidence,) = group.get_measurements(name=codes.LEVEL_CONFIDENCE)
    assert (group.tracking_identifier, confidence.value) == ("L4/L5", 0.877)
    evaluations = next(
        i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "C0034375"
    ).ContentSequence
    (verdict,) = [
        i
        for i in evaluations
        if i.ConceptNameCodeSequence[0].CodeValue == codes.QUALITY_CHECK.value
    ]
    assert verdict.ConceptCodeSequence[0].CodeMeaning == "Low confidence: review"
    reasons = [
        i.TextValue
        for i in evaluations
        if i.ConceptNameCodeSequence[0].CodeValue == codes.REVIEW_REASON.value
    ]
    assert reasons == list(REVIEW.reasons)
    rows = [r.split("|") for r in oru.data.decode().split("\r") if r.startswith("OBX")]
    assert rows[1][5] == f"{codes.NEEDS_REVIEW.value}^Low confidence: review^99PACSNODE"
    assert rows[2][5] == "only 3 of 5 lumbar discs found; sacrum not in view"
    assert [(r[4], r[5]) for r in rows if r[3].startswith(codes.LEVEL_CONFIDENCE.value)] == [
        ("L4/L5", "0.877")
    ]
    passed = analyse_study(series_files(phantom_study), FakePredictor(), CONTEXT)
    assert passed.quality == StudyQuality(False)
    assert b"Low confidence" not in passed.results[1].data + passed.results[2].data


def test_confidences_and_quality_check_are_validated() -> None:
    prediction = FakePrediction(
        label_map=np.zeros((1, 2, 2), dtype=np.uint8),
        level_probabilities={"L4/L5": {"disc_bulge": 0.5}},
        level_calls={"L4/L5": {"disc_bulge": True}},
        measurements={},
        level_confidence={"L4/L5": 0.12345},
    )
    (confidence,) = confidences_of(prediction)
    assert (confidence.level, confidence.confidence) == ("L4/L5", 0.123)
    prediction.level_confidence = {"L4/L5": 0.9, "L5/S1": 0.9}
    with pytest.raises(ValueError, match="not of the levels scored"):
        confidences_of(prediction)
    prediction.level_confidence = {"L4/L5": 1.5}
    with pytest.raises(ValueError, match="outside"):
        confidences_of(prediction)
    assert quality_of(prediction) == StudyQuality(False)
    prediction.quality = FakeQuality(False, ("sacrum not in view",))
    with pytest.raises(ValueError, match="exactly when"):
        quality_of(prediction)
    prediction.quality = FakeQuality(True, ("x" * 201,))
    with pytest.raises(ValueError, match="200"):
        quality_of(prediction)


class _LargestOnOneSlice(FakePredictor):
    """The fake prediction, with the L4/L5 disc widest on slice ``widest``."""

    def __init__(self, widest: int) -> None:
        super().__init__()
        self.widest = widest

    def predict(self, volumes: Mapping[str, Any]) -> FakePrediction:
        prediction = super().predict(volumes)
        prediction.label_map[self.widest, 20:24, 20:30] = prediction.label_map[0, 20, 30]
        return prediction


def test_each_level_is_outlined_on_the_slice_where_its_disc_is_largest(
    phantom_study: WrittenStudy,
) -> None:
    files = series_files(phantom_study)
    datasets = read_series(files["SAG_T2"]).datasets
    widest = len(datasets) - 2
    bundle = analyse_study(files, _LargestOnOneSlice(widest), CONTEXT)
    sr = next(r for r in bundle.results if r.kind == "sr")
    report = hd.sr.srread(io.BytesIO(sr.data)).content
    (group,) = report.get_planar_roi_measurement_groups()
    assert group.tracking_identifier == "L4/L5"
    region = group.roi
    assert region is not None and region.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    source = region.ContentSequence[0].ReferencedSOPSequence[0]
    assert source.ReferencedSOPInstanceUID == datasets[widest].SOPInstanceUID
    assert source.ReferencedSOPClassUID == datasets[widest].SOPClassUID
    # The convex outline of rows 20..23 and columns 20..59 (pixel corners), closed.
    points = region.value
    assert {tuple(p) for p in points} == {(20.0, 20.0), (60.0, 20.0), (60.0, 24.0), (20.0, 24.0)}
    assert tuple(points[0]) == tuple(points[-1])
    (segment_group,) = report.get_volumetric_roi_measurement_groups()
    assert segment_group.tracking_uid == group.tracking_uid


def test_a_disc_not_segmented_is_placed_between_its_vertebrae(
    phantom_study: WrittenStudy,
) -> None:
    datasets = list(read_series(series_files(phantom_study)["SAG_T2"]).datasets)
    scheme = load_label_scheme()
    labels = np.zeros((len(datasets), *datasets[0].pixel_array.shape), dtype=np.uint8)
    labels[1, 10:20, 30:40] = scheme.by_name("L4").value
    labels[1, 24:34, 30:40] = scheme.by_name("L5").value
    labels[2, 24:34, 30:40] = scheme.by_name("L5").value
    regions = level_regions(datasets, labels, ["L4/L5", "L1/L2"], scheme)
    (region,) = regions  # L1/L2 has neither disc nor vertebrae: no region
    assert (region.level, region.graphic_type) == ("L4/L5", RegionShape.POINT)
    assert region.sop_instance_uid == datasets[1].SOPInstanceUID
    assert region.points == ((35.0, 22.0),)
