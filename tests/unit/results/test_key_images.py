"""Key images: Secondary Capture with burned-in overlay and AI label."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.uid import SecondaryCaptureImageStorage

from pacs_node.results.inputs import AI_LABEL, KeyImageMode
from pacs_node.results.key_images import MIN_SIZE, build_key_images, render

RoundTrip = Callable[[Dataset], Dataset]


def test_midline_image_round_trip(
    t2_series, structure_values, context, roundtrip: RoundTrip
) -> None:
    (image,) = build_key_images(
        t2_series.images, t2_series.label_map, structure_values, context=context
    )
    read = roundtrip(image)
    assert read.SOPClassUID == SecondaryCaptureImageStorage
    assert read.PhotometricInterpretation == "RGB" and read.SamplesPerPixel == 3
    assert read.BurnedInAnnotation == "YES"
    assert AI_LABEL in read.SeriesDescription and AI_LABEL in read.ImageComments
    pixels = read.pixel_array
    assert pixels.shape[2] == 3 and min(pixels.shape[:2]) >= MIN_SIZE
    # The source slice it shows is referenced and is the one with most spine in it.
    source_uid = read.SourceImageSequence[0].ReferencedSOPInstanceUID
    index = [i.SOPInstanceUID for i in t2_series.images].index(source_uid)
    spine = [v for k, v in structure_values.items() if k != "canal"]
    counts = np.isin(t2_series.label_map, spine).sum(axis=(1, 2))
    assert counts[index] == counts.max()
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "AccessionNumber"):
        assert read[keyword].value == t2_series.images[0][keyword].value
    assert "OperatorsName" not in read and 0x00091010 not in read


def test_per_level_images_follow_the_discs(t2_series, structure_values, context) -> None:
    images = build_key_images(
        t2_series.images,
        t2_series.label_map,
        structure_values,
        context=context,
        mode=KeyImageMode.PER_LEVEL,
    )
    discs = ["T11/T12", "T12/L1", "L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"]
    assert [i.ImageComments.split("; ")[1] for i in images] == [f"level {d}" for d in discs]
    assert [i.InstanceNumber for i in images] == list(range(1, len(discs) + 1))
    assert len({i.SOPInstanceUID for i in images}) == len(discs)
    assert len({i.SeriesInstanceUID for i in images}) == 1


def test_overlay_and_label_are_burned_in() -> None:
    pixels = np.full((32, 32), 100, dtype=np.uint16)
    pixels[0, 0] = 0  # gives the window a range
    labels = np.zeros((32, 32), dtype=np.uint8)
    labels[20:30, 4:12] = 12
    rgb, factor = render(pixels, labels, {12: "L4/L5"}, "level L4/L5")
    assert factor == MIN_SIZE // 32
    gray_region = rgb[2 * factor :, 20 * factor :]
    assert (gray_region[..., 0] == gray_region[..., 1]).all()  # untouched: still gray
    label_region = rgb[21 * factor : 22 * factor, 5 * factor : 6 * factor]
    assert (label_region[..., 0] != label_region[..., 2]).any()  # tinted
    banner = rgb[:14]
    yellow = (banner[..., 0] > 200) & (banner[..., 1] > 200) & (banner[..., 2] < 50)
    assert yellow.sum() > 50  # the AI label is written


def test_rebuild_is_identical(t2_series, structure_values, context, tmp_path: Path) -> None:
    paths = []
    for name in ("a.dcm", "b.dcm"):
        (image,) = build_key_images(
            t2_series.images, t2_series.label_map, structure_values, context=context
        )
        paths.append(tmp_path / name)
        image.save_as(paths[-1], enforce_file_format=True)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_nothing_found_gives_no_images(t2_series, structure_values, context) -> None:
    empty = np.zeros_like(t2_series.label_map)
    assert build_key_images(t2_series.images, empty, structure_values, context=context) == []
    canal_only = np.where(t2_series.label_map == 20, 20, 0).astype(np.uint8)
    assert (
        build_key_images(
            t2_series.images, canal_only, structure_values, context=context, mode="per_level"
        )
        == []
    )


@pytest.mark.parametrize("mode", list(KeyImageMode))
def test_key_images_pass_dciodvfy(
    t2_series, structure_values, context, tmp_path: Path, dciodvfy, mode: KeyImageMode
) -> None:
    images = build_key_images(
        t2_series.images, t2_series.label_map, structure_values, context=context, mode=mode
    )
    for number, image in enumerate(images):
        path = tmp_path / f"sc{number}.dcm"
        image.save_as(path, enforce_file_format=True)
        assert dciodvfy(path) == []
