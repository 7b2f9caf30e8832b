"""DICOM SEG builder: round trip, geometry, identity, validity, edge cases."""

from __future__ import annotations

import copy
import io
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom import Dataset

from pacs_node.results import codes
from pacs_node.results.inputs import AI_LABEL, AlgorithmInfo, ResultContext
from pacs_node.results.seg import build_seg

RoundTrip = Callable[[Dataset], Dataset]


def _encoded(seg: Dataset) -> bytes:
    buffer = io.BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("segmentation_type", ["binary", "labelmap"])
def test_round_trip_codes_segments_and_geometry(
    t2_series, structure_values, algorithm, context, roundtrip: RoundTrip, segmentation_type: str
) -> None:
    built = build_seg(
        t2_series.images,
        t2_series.label_map,
        structure_values,
        algorithm=algorithm,
        context=context,
        segmentation_type=segmentation_type,
    )
    seg = hd.seg.segread(io.BytesIO(_encoded(built)))
    assert isinstance(seg, hd.seg.Segmentation)
    assert hd.seg.Segmentation.from_dataset(roundtrip(built)).segment_numbers == seg.segment_numbers

    found = sorted(
        {n for n, v in structure_values.items() if v in t2_series.label_map},
        key=structure_values.__getitem__,
    )
    assert "T9" not in found and "canal" in found
    assert seg.segment_numbers == list(range(1, len(found) + 1))
    for number, name in enumerate(found, start=1):
        desc = seg.get_segment_description(number)
        assert desc.segment_label == name
        assert desc.segmented_property_type == codes.STRUCTURE_CODES[name]
        assert desc.segmented_property_category == codes.ANATOMICAL_STRUCTURE
        assert desc.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        algo = desc.algorithm_identification[0]
        assert algo.AlgorithmName == algorithm.name
        assert algo.AlgorithmVersion == algorithm.version
        assert f"checkpoint_sha256={algorithm.checkpoint_sha256}" in algo.AlgorithmParameters
    source_uids = {str(i.SOPInstanceUID) for i in t2_series.images}
    referenced = {
        str(item.ReferencedSOPInstanceUID)
        for series in seg.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    assert referenced == source_uids
    assert (
        seg.ReferencedSeriesSequence[0].SeriesInstanceUID == t2_series.images[0].SeriesInstanceUID
    )
    assert seg.FrameOfReferenceUID == t2_series.images[0].FrameOfReferenceUID
    # Geometry: every source slice's stored labels equal the model's labels for that slice.
    lookup = np.zeros(max(structure_values.values()) + 1, dtype=np.uint8)
    for number, name in enumerate(found, start=1):
        lookup[structure_values[name]] = number
    for image, labels in zip(t2_series.images, t2_series.label_map, strict=True):
        expected = lookup[labels]
        if not expected.any():
            continue
        stored = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[image.SOPInstanceUID],
            combine_segments=True,
            ignore_spatial_locations=False,
        )[0]
        np.testing.assert_array_equal(stored, expected)


def test_frame_positions_match_source_slices(
    t2_series, structure_values, algorithm, context, roundtrip: RoundTrip
) -> None:
    seg = roundtrip(
        build_seg(
            t2_series.images,
            t2_series.label_map,
            structure_values,
            algorithm=algorithm,
            context=context,
        )
    )
    by_uid = {i.SOPInstanceUID: i for i in t2_series.images}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source_uid = (
            frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        )
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        assert [float(v) for v in position] == pytest.approx(
            [float(v) for v in by_uid[source_uid].ImagePositionPatient]
        )
    orientation = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
    assert list(orientation.ImageOrientationPatient) == pytest.approx([0, 1, 0, 0, 0, -1])


def test_empty_frames_are_omitted(t2_series, structure_values, algorithm, context) -> None:
    seg = build_seg(
        t2_series.images,
        t2_series.label_map,
        structure_values,
        algorithm=algorithm,
        context=context,
    )
    expected = sum(
        int((t2_series.label_map == v).any(axis=(1, 2)).sum()) for v in structure_values.values()
    )
    assert seg.NumberOfFrames == expected < len(t2_series.images) * 16


def test_slice_order_does_not_change_the_object(
    t2_series, structure_values, algorithm, context
) -> None:
    shuffled = build_seg(
        t2_series.images,
        t2_series.label_map,
        structure_values,
        algorithm=algorithm,
        context=context,
    )
    order = np.argsort([-float(i.ImagePositionPatient[0]) for i in t2_series.images])
    reordered = build_seg(
        [t2_series.images[i] for i in order],
        t2_series.label_map[order],
        structure_values,
        algorithm=algorithm,
        context=context,
    )
    reversed_ = build_seg(
        t2_series.images[::-1],
        t2_series.label_map[::-1],
        structure_values,
        algorithm=algorithm,
        context=context,
    )
    assert _encoded(shuffled) == _encoded(reordered) == _encoded(reversed_)


def test_rebuild_is_byte_identical_and_uids_derive_from_job(
    t2_series, structure_values, algorithm, context
) -> None:
    first = build_seg(
        t2_series.images,
        t2_series.label_map,
        structure_values,
        algorithm=algorithm,
        context=context,
    )
    again = build_seg(
        t2_series.images,
        t2_series.label_map,
        structure_values,
        algorithm=algorithm,
        context=context,
    )
    assert _encoded(first) == _encoded(again)
    other_job = ResultContext(
        job_key="job-0002/v1", created=context.created, software_version=context.software_version
    )
    other = build_seg(
        t2_series.images,
        t2_series.label_map,
        structure_values,
        algorithm=algorithm,
        context=other_job,
    )
    assert other.SOPInstanceUID != first.SOPInstanceUID
    assert other.SeriesInstanceUID != first.SeriesInstanceUID
    labelmap = build_seg(
        t2_series.images,
        t2_series.label_map,
        structure_values,
        algorithm=algorithm,
        context=context,
        segmentation_type="labelmap",
    )
    assert labelmap.SOPInstanceUID != first.SOPInstanceUID


def test_rebuild_in_another_process_is_byte_identical(
    t2_series, structure_values, algorithm, context, tmp_path: Path
) -> None:
    """A retry runs in a new process (another hash seed): it must write the same bytes."""
    inputs = tmp_path / "inputs.pickle"
    inputs.write_bytes(
        pickle.dumps((t2_series.images, t2_series.label_map, structure_values, algorithm, context))
    )
    script = (
        "import io, pathlib, pickle, sys\n"
        "from pacs_node.results.seg import build_seg\n"
        "images, labels, values, algorithm, context = pickle.loads(\n"
        "    pathlib.Path(sys.argv[1]).read_bytes()\n"
        ")\n"
        "seg = build_seg(images, labels, values, algorithm=algorithm, context=context)\n"
        "buffer = io.BytesIO()\n"
        "seg.save_as(buffer, enforce_file_format=True)\n"
        "sys.stdout.buffer.write(buffer.getvalue())\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(inputs)],
        capture_output=True,
        check=True,
        cwd=Path(__file__).parents[3],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    here = build_seg(
        t2_series.images,
        t2_series.label_map,
        structure_values,
        algorithm=algorithm,
        context=context,
    )
    assert run.stdout == _encoded(here)


def test_patient_and_study_carry_over_and_nothing_else_leaks(
    t2_series, structure_values, algorithm, context, roundtrip: RoundTrip
) -> None:
    seg = roundtrip(
        build_seg(
            t2_series.images,
            t2_series.label_map,
            structure_values,
            algorithm=algorithm,
            context=context,
        )
    )
    source = t2_series.images[0]
    for keyword in (
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "StudyID",
        "AccessionNumber",
        "ReferringPhysicianName",
    ):
        assert seg[keyword].value == source[keyword].value, keyword
    for keyword in ("ImageComments", "OperatorsName"):
        assert keyword not in seg
    assert 0x00091010 not in seg
    assert AI_LABEL in seg.SeriesDescription
    assert seg.ContentDescription == AI_LABEL
    assert seg.ContentDate == "20260301" and seg.InstanceCreationDate == "20260301"


def test_two_series_of_one_study(
    t1_series, t2_series, structure_values, algorithm, context
) -> None:
    seg_t1 = build_seg(
        t1_series.images,
        t1_series.label_map,
        structure_values,
        algorithm=algorithm,
        context=context,
    )
    seg_t2 = build_seg(
        t2_series.images,
        t2_series.label_map,
        structure_values,
        algorithm=algorithm,
        context=context,
    )
    assert seg_t1.StudyInstanceUID == seg_t2.StudyInstanceUID
    assert seg_t1.SeriesInstanceUID != seg_t2.SeriesInstanceUID
    assert seg_t1.SOPInstanceUID != seg_t2.SOPInstanceUID
    assert seg_t1.FrameOfReferenceUID == t1_series.images[0].FrameOfReferenceUID
    assert seg_t1.FrameOfReferenceUID != seg_t2.FrameOfReferenceUID
    ref = seg_t1.ReferencedSeriesSequence[0].SeriesInstanceUID
    assert ref == t1_series.images[0].SeriesInstanceUID


def test_single_slice_series(
    series_factory, structure_values, algorithm, context, roundtrip: RoundTrip
) -> None:
    one = series_factory(1, seed=5, number=7, desc="T2 SAG", same_for=True)
    seg = hd.seg.Segmentation.from_dataset(
        roundtrip(
            build_seg(
                one.images, one.label_map, structure_values, algorithm=algorithm, context=context
            )
        )
    )
    assert seg.NumberOfFrames == seg.number_of_segments


def test_absent_structures_get_no_segment(t2_series, structure_values, algorithm, context) -> None:
    labels = t2_series.label_map.copy()
    labels[labels == structure_values["L3"]] = 0
    seg = build_seg(
        t2_series.images, labels, structure_values, algorithm=algorithm, context=context
    )
    assert "L3" not in {s.SegmentLabel for s in seg.SegmentSequence}
    only_canal = {"canal": structure_values["canal"]}
    seg = build_seg(
        t2_series.images, t2_series.label_map, only_canal, algorithm=algorithm, context=context
    )
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["canal"]


def test_binary_seg_passes_dciodvfy(
    t2_series, structure_values, algorithm, context, tmp_path: Path, dciodvfy
) -> None:
    path = tmp_path / "seg.dcm"
    build_seg(
        t2_series.images,
        t2_series.label_map,
        structure_values,
        algorithm=algorithm,
        context=context,
    ).save_as(path, enforce_file_format=True)
    assert dciodvfy(path) == []


def _with(images: list[Dataset], index: int, **changes: object) -> list[Dataset]:
    copies = [copy.deepcopy(i) for i in images]
    for keyword, value in changes.items():
        setattr(copies[index], keyword, value)
    return copies


@pytest.mark.parametrize(
    "change",
    [
        {"FrameOfReferenceUID": "1.2.3"},
        {"SeriesInstanceUID": "1.2.4"},
        {"ImageOrientationPatient": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]},
    ],
)
def test_inconsistent_series_is_rejected(
    t2_series, structure_values, algorithm, context, change: dict[str, object]
) -> None:
    images = _with(t2_series.images, 2, **change)
    with pytest.raises(ValueError):
        build_seg(
            images, t2_series.label_map, structure_values, algorithm=algorithm, context=context
        )


@pytest.mark.parametrize("bad", ["shape", "float", "empty"])
def test_bad_label_map_is_rejected(
    t2_series, structure_values, algorithm: AlgorithmInfo, context, bad: str
) -> None:
    labels = {
        "shape": t2_series.label_map[:, :-1],
        "float": t2_series.label_map.astype(float),
        "empty": np.zeros_like(t2_series.label_map),
    }[bad]
    with pytest.raises(ValueError):
        build_seg(t2_series.images, labels, structure_values, algorithm=algorithm, context=context)


def test_sources_without_type2_patient_and_study_attributes(
    t2_series, structure_values, algorithm, context, roundtrip: RoundTrip
) -> None:
    """A sender that omits Type 2 attributes still gets its SEG, carrying them empty."""
    images = [copy.deepcopy(image) for image in t2_series.images]
    for image in images:
        del image.PatientBirthDate, image.StudyID
    built = build_seg(
        images, t2_series.label_map, structure_values, algorithm=algorithm, context=context
    )
    seg = roundtrip(built)
    assert (seg.PatientBirthDate, seg.StudyID) == ("", "")
    assert seg.PatientID == images[0].PatientID
    assert all("PatientBirthDate" not in image for image in images)  # the caller's are untouched
