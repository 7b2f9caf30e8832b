"""A SEG built from a phantom's ground truth overlays that ground truth exactly.

The phantom (``models.phantom``) gives images, labels and geometry; the phantom DICOM writer
(``worker.phantom``) turns a series into MR instances, which are shuffled, and the SEG built
from the ground truth labels is read back and checked frame by frame *through geometry*: each
frame's plane position must be the position of the source instance it references, and its pixels
must equal the phantom's labels for the slice at that position. The sagittal series and the
oblique axial series are both checked.
"""

from __future__ import annotations

import io
import random

import highdicom as hd
import numpy as np
import pytest

from models.labels import load_label_scheme
from models.phantom import PhantomConfig, PhantomStudy, generate_study
from pacs_node.results.hl7 import build_oru
from pacs_node.results.inputs import LevelFinding, LevelMeasurement
from pacs_node.results.seg import build_seg
from pacs_node.results.sr import build_sr
from worker.phantom.datasets import build_series_datasets
from worker.pipeline import level_regions


@pytest.fixture(scope="module")
def phantom() -> PhantomStudy:
    """A small seeded phantom study."""
    return generate_study(7, PhantomConfig.small())


@pytest.mark.parametrize("role", ["SAG_T2", "AX_T2"])
def test_seg_overlays_phantom_ground_truth(
    phantom: PhantomStudy, algorithm, context, role: str
) -> None:
    index = [s.role for s in phantom.series].index(role)
    series = phantom.series[index]
    assert series.labels is not None
    values = {s.name: s.value for s in load_label_scheme().structures}
    images = build_series_datasets(phantom, index, uid_key="results-overlay-test")
    order = list(range(len(images)))
    random.Random(0).shuffle(order)
    built = build_seg(
        [images[i] for i in order],
        series.labels[order],
        values,
        algorithm=algorithm,
        context=context,
    )
    buffer = io.BytesIO()
    built.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    seg = hd.seg.segread(buffer)

    index_of = {i.SOPInstanceUID: n for n, i in enumerate(images)}
    value_of = {s.SegmentNumber: values[s.SegmentLabel] for s in seg.SegmentSequence}
    present = {v for v in np.unique(series.labels).tolist() if v}
    assert set(value_of.values()) == present
    frames = seg.pixel_array if seg.NumberOfFrames > 1 else seg.pixel_array[None]
    seen = set()
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        slice_index = index_of[source]
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert position == pytest.approx(series.image_positions[slice_index].tolist(), abs=1e-3)
        number = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        truth = series.labels[slice_index] == value_of[number]
        np.testing.assert_array_equal(frame.astype(bool), truth)
        seen.add((slice_index, value_of[number]))
    # Every non-empty (slice, structure) pair of the ground truth has its frame.
    expected = {
        (s, v) for s in range(len(images)) for v in present if (series.labels[s] == v).any()
    }
    assert seen == expected
    orientation = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
    assert [float(v) for v in orientation.ImageOrientationPatient] == pytest.approx(
        list(series.image_orientation), abs=1e-6
    )
    spacing = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    assert [float(v) for v in spacing] == pytest.approx(list(series.pixel_spacing))


def test_phantom_truth_as_report_and_message(phantom: PhantomStudy, algorithm, context) -> None:
    """The phantom's truth, as a perfect model's output, gives one SR group per visible disc."""
    index = [s.role for s in phantom.series].index("SAG_T2")
    series = phantom.series[index]
    assert series.labels is not None
    values = {s.name: s.value for s in load_label_scheme().structures}
    images = build_series_datasets(phantom, index, uid_key="results-overlay-test")
    seg = build_seg(images, series.labels, values, algorithm=algorithm, context=context)
    findings = [
        LevelFinding(level, key, 1.0 if present else 0.0, present)
        for level, per_level in phantom.findings.items()
        for key, present in per_level.items()
    ]
    heights = [
        LevelMeasurement(lv, "disc_height", h, "mm") for lv, h in phantom.measurements.items()
    ]
    regions = level_regions(images, series.labels, list(phantom.findings), load_label_scheme())
    sr = build_sr(
        images,
        findings,
        heights,
        algorithm=algorithm,
        context=context,
        segmentation=seg,
        regions=regions,
    )
    report = hd.sr.MeasurementReport.from_sequence([sr])
    groups = report.get_volumetric_roi_measurement_groups()
    segmented = {s.SegmentLabel for s in seg.SegmentSequence}
    assert {g.tracking_identifier for g in groups} == set(phantom.findings) & segmented
    # Every segmented disc is outlined on an image of the series.
    outlined = {g.tracking_identifier for g in report.get_planar_roi_measurement_groups()}
    assert outlined >= set(phantom.findings) & segmented
    message = build_oru(images[0], findings, heights, context=context).to_er7()
    present = sum(p for per_level in phantom.findings.values() for p in per_level.values())
    flagged = [line.split("|") for line in message.split("\r") if line.startswith("OBX")]
    assert sum(fields[8] == "A" for fields in flagged) == present
