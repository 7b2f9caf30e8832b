"""The SEG assembled by ``build_seg`` is the file highdicom's ``Segmentation`` writes.

The reference below is how ``build_seg`` used highdicom's constructor before it assembled the data
set itself. Both are written to bytes and compared whole, for binary and label map SEGs over
inputs that take every branch (one segment or many, computed slice spacing, slices not regularly
spaced, frames that do not fill whole bytes, labels that are no structure). The only difference
allowed is the pad byte of an odd-length Pixel Data: 00H as PS3.5 requires, where highdicom writes
an ASCII ``0``.
"""

from __future__ import annotations

import copy
import io
import pickle
from collections.abc import Callable

import highdicom as hd
import numpy as np
import pytest
from pydicom import Dataset

from pacs_node.results.identity import derive_uid
from pacs_node.results.inputs import AI_LABEL, AlgorithmInfo, ResultContext, SegmentationType
from pacs_node.results.seg import CONTENT_LABEL, build_seg, seg_uids
from pacs_node.results.source import ordered_series, with_type2_attributes
from pacs_node.results.stamp import pin_creation

Inputs = tuple[list[Dataset], np.ndarray, dict[str, int]]


def _highdicom_seg(
    built: hd.seg.Segmentation,
    source_images: list[Dataset],
    label_map: np.ndarray,
    structure_values: dict[str, int],
    context: ResultContext,
    segmentation_type: str,
) -> hd.seg.Segmentation:
    """The SEG highdicom's constructor makes of the same inputs (segment descriptions, which
    ``build_seg`` makes the same way for both, are taken from ``built``)."""
    seg_type = SegmentationType(segmentation_type)
    images, labels = ordered_series(source_images, label_map)
    present = set(np.unique(labels).tolist())
    found = sorted(v for v in structure_values.values() if v in present)
    lookup = {value: number for number, value in enumerate(found, start=1)}
    segment_numbers = np.zeros(labels.shape, dtype=np.uint8)
    for value, number in lookup.items():
        segment_numbers[labels == value] = number
    descriptions = [copy.deepcopy(d) for d in built.SegmentSequence if d.SegmentNumber != 0]
    series_uid, sop_uid = seg_uids(context, str(images[0].SeriesInstanceUID), seg_type)
    seg = hd.seg.Segmentation(
        source_images=[with_type2_attributes(images[0]), *images[1:]],
        pixel_array=segment_numbers,
        segmentation_type=seg_type.value.upper(),
        segment_descriptions=descriptions,
        series_instance_uid=series_uid,
        series_number=context.seg_series_number,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=context.manufacturer,
        manufacturer_model_name=context.model_name,
        software_versions=context.software_version,
        device_serial_number=context.device_serial_number,
        content_description=AI_LABEL,
        content_label=CONTENT_LABEL,
        series_description=f"AI spine SEG - {AI_LABEL}"[:64],
        institution_name=context.institution_name,
        content_date=context.created.date(),
        content_time=context.created.time(),
        omit_empty_frames=True,
    )
    pin_creation(seg, context)
    uid = derive_uid(context.job_key, f"dim/{sop_uid}", prefix=context.uid_prefix)
    for item in [*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence]:
        item.DimensionOrganizationUID = uid
    return seg


def _encoded(seg: Dataset) -> bytes:
    buffer = io.BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _copies(images: list[Dataset], **changes: object) -> list[Dataset]:
    copies = [copy.deepcopy(image) for image in images]
    for image in copies:
        for keyword, value in changes.items():
            if value is None:
                delattr(image, keyword)
            else:
                setattr(image, keyword, value)
    return copies


def _t2(series, values) -> Inputs:
    return series.images, series.label_map, values


def _one_structure(series, values) -> Inputs:
    return series.images, series.label_map, {"canal": values["canal"]}


def _no_spacing_nor_manufacturer(series, values) -> Inputs:
    """Slice spacing computed from the positions; no acquisition equipment to credit."""
    images = _copies(series.images, SpacingBetweenSlices=None, Manufacturer=None)
    return images, series.label_map, values


def _gap_between_slices(series, values) -> Inputs:
    """One structure on slices 0, 1 and 4: not a regular volume."""
    labels = np.zeros_like(series.label_map)
    order = np.argsort([-float(i.ImagePositionPatient[0]) for i in series.images])
    for index in order[[0, 1, 4]]:
        labels[index, 3:9, 4:7] = values["L4"]
    return series.images, labels, {"L4": values["L4"]}


def _odd_geometry(series, values) -> Inputs:
    """13 x 21 frames: rows and frames start mid-byte; int64 labels with non-structure values."""
    rng = np.random.default_rng(3)
    labels = rng.choice([0, 0, 0, 1, 2, 20, 99, -1], size=(len(series.images), 13, 21))
    labels[0] = 0
    return _copies(series.images, Rows=13, Columns=21), labels.astype(np.int64), values


def _utf8(series, values) -> Inputs:
    images = _copies(series.images, SpecificCharacterSet="ISO_IR 192", PatientName="Müller^Zoë")
    return images, series.label_map, values


def _single_slice(series, values) -> Inputs:
    """One slice, no background: the canal wherever there was none."""
    labels = np.where(series.label_map[:1] == 0, values["canal"], series.label_map[:1])
    return series.images[:1], labels, values


CASES: dict[str, Callable[..., Inputs]] = {
    "t2": _t2,
    "one structure": _one_structure,
    "no spacing nor manufacturer": _no_spacing_nor_manufacturer,
    "gap between slices": _gap_between_slices,
    "odd geometry": _odd_geometry,
    "single slice": _single_slice,
    "UTF-8 sources": _utf8,
}


@pytest.mark.parametrize("segmentation_type", ["binary", "labelmap"])
@pytest.mark.parametrize("case", list(CASES))
def test_file_is_the_one_highdicom_writes(
    t2_series,
    structure_values,
    algorithm: AlgorithmInfo,
    context: ResultContext,
    case: str,
    segmentation_type: str,
) -> None:
    images, labels, values = CASES[case](t2_series, structure_values)
    built = build_seg(
        images,
        labels,
        values,
        algorithm=algorithm,
        context=context,
        segmentation_type=segmentation_type,
    )
    reference = _highdicom_seg(built, images, labels, values, context, segmentation_type)
    ours, theirs = _encoded(built), _encoded(reference)
    if len(built.PixelData) % 2:  # the last byte of the file pads the Pixel Data
        assert (ours[-1:], theirs[-1:]) == (b"\x00", b"0")
        ours, theirs = ours[:-1], theirs[:-1]
    assert ours == theirs


@pytest.fixture
def t2_seg(
    t2_series, structure_values, algorithm: AlgorithmInfo, context: ResultContext
) -> hd.seg.Segmentation:
    """The binary SEG of the T2 fixture series, as ``build_seg`` returns it."""
    return build_seg(
        t2_series.images,
        t2_series.label_map,
        structure_values,
        algorithm=algorithm,
        context=context,
    )


def test_per_frame_items_read_as_highdicom_builds_them(
    t2_seg: hd.seg.Segmentation, t2_series, structure_values, context: ResultContext
) -> None:
    built = t2_seg
    reference = _highdicom_seg(
        built, t2_series.images, t2_series.label_map, structure_values, context, "binary"
    )
    assert [item.to_json_dict() for item in built.PerFrameFunctionalGroupsSequence] == [
        item.to_json_dict() for item in reference.PerFrameFunctionalGroupsSequence
    ]


@pytest.mark.parametrize("case", ["t2", "UTF-8 sources"])
def test_writing_leaves_the_per_frame_items_encoded(
    t2_series, structure_values, algorithm: AlgorithmInfo, context: ResultContext, case: str
) -> None:
    images, labels, values = CASES[case](t2_series, structure_values)
    seg = build_seg(images, labels, values, algorithm=algorithm, context=context)
    _encoded(seg)
    assert seg.get_item(0x52009230).is_raw  # written as built, not decoded and re-encoded


def test_frame_index_is_built_on_first_use(
    t2_seg: hd.seg.Segmentation, t2_series, structure_values, context: ResultContext
) -> None:
    seg = t2_seg
    _encoded(seg)
    assert seg.get_segment_description(1).segment_label == "S"
    assert "_db_con" not in vars(seg)  # writing and reading descriptions need no frame index

    image = t2_series.images[0]
    stored = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[image.SOPInstanceUID], combine_segments=True
    )
    reference = _highdicom_seg(
        seg, t2_series.images, t2_series.label_map, structure_values, context, "binary"
    )
    expected = reference.get_pixels_by_source_instance(
        source_sop_instance_uids=[image.SOPInstanceUID], combine_segments=True
    )
    np.testing.assert_array_equal(stored, expected)
    assert type(seg) is hd.seg.Segmentation
    assert seg.segment_numbers == reference.segment_numbers


def test_copies_are_indexed_segmentations(t2_seg: hd.seg.Segmentation, t2_series) -> None:
    seg = t2_seg
    copies = [copy.deepcopy(seg), pickle.loads(pickle.dumps(seg))]  # noqa: S301  # our own bytes
    for copied in copies:
        assert type(copied) is hd.seg.Segmentation
        assert len(copied.get_source_image_uids()) == len(t2_series.images)
        assert _encoded(copied) == _encoded(seg)
