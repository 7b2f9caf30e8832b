"""Key images: Secondary Capture with the segmentation burned in, for viewers without SEG support.

Each image is an RGB rendering of one source slice (windowed to its 1st-99th percentile), the
structures blended in colour, the structure names written at their centroids, and a banner
"AI generated - not for clinical use". Which slices are rendered is chosen per destination
(:class:`KeyImageMode`). Small slices are enlarged by an integer factor so the text stays legible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from pacs_node.results.identity import derive_uid
from pacs_node.results.inputs import AI_LABEL, KeyImageMode, ResultContext
from pacs_node.results.palette import structure_colour
from pacs_node.results.source import ordered_series, present_structures
from pacs_node.results.stamp import pin_creation
from pacs_node.results.summary import ordered_levels

MIN_SIZE = 384
"""Rendered images are enlarged (nearest neighbour) until the shorter side reaches this."""
OVERLAY_ALPHA = 0.4


def _window(pixels: np.ndarray) -> np.ndarray:
    low, high = np.percentile(pixels, [1, 99])
    scaled = (pixels.astype(float) - low) / max(float(high - low), 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def _orientation_letter(vector: Sequence[float]) -> str:
    letters = (("L", "R"), ("P", "A"), ("H", "F"))
    ranked = sorted(range(3), key=lambda axis: -abs(vector[axis]))
    return "".join(letters[a][0 if vector[a] > 0 else 1] for a in ranked if abs(vector[a]) > 0.25)


def render(
    pixels: np.ndarray, labels: np.ndarray, names: Mapping[int, str], caption: str
) -> tuple[np.ndarray, int]:
    """Render one slice with its labels burned in.

    Args:
        pixels: The slice's stored values (rows, cols).
        labels: Label values of the slice (rows, cols); 0 is background.
        names: Label value -> structure name, for the values to draw.
        caption: Text written in the banner after the AI label.

    Returns:
        The RGB image (uint8, rows*f, cols*f, 3) and the enlargement factor f.
    """
    factor = max(1, -(-MIN_SIZE // min(pixels.shape)))
    gray = np.repeat(np.repeat(_window(pixels), factor, 0), factor, 1)
    big_labels = np.repeat(np.repeat(labels, factor, 0), factor, 1)
    rgb = np.stack([gray] * 3, axis=-1).astype(float)
    for value in names:
        mask = big_labels == value
        colour = np.asarray(structure_colour(value), dtype=float)
        rgb[mask] = (1 - OVERLAY_ALPHA) * rgb[mask] + OVERLAY_ALPHA * colour
    image = Image.fromarray(rgb.round().astype(np.uint8))
    draw = ImageDraw.Draw(image)
    size = max(12, image.height // 32)
    small = ImageFont.load_default(size=max(10, size * 3 // 4))
    for value, name in names.items():
        rows, cols = np.nonzero(big_labels == value)
        if rows.size:
            centre = (float(cols.mean()), float(rows.mean()))
            draw.text(centre, name, fill=(255, 255, 255), anchor="mm", font=small)
    draw.rectangle((0, 0, image.width, size + 6), fill=(0, 0, 0))
    draw.text(
        (3, 2),
        f"{AI_LABEL} | {caption}",
        fill=(255, 255, 0),
        font=ImageFont.load_default(size=size),
    )
    return np.asarray(image), factor


def _choose(
    labels: np.ndarray, found: Sequence[tuple[str, int]], mode: KeyImageMode
) -> list[tuple[int, str]]:
    """Return (slice index, caption) pairs for ``mode``."""
    if mode is KeyImageMode.MIDLINE:
        spine = [v for name, v in found if name != "canal"] or [v for _, v in found]
        counts = np.isin(labels, spine).sum(axis=(1, 2))
        return [(int(np.argmax(counts)), "spine overview")]
    values = dict(found)
    return [
        (int(np.argmax((labels == values[level]).sum(axis=(1, 2)))), f"level {level}")
        for level in ordered_levels(values)
    ]


def build_key_images(
    source_images: Sequence[Dataset],
    label_map: np.ndarray,
    structure_values: Mapping[str, int],
    *,
    context: ResultContext,
    mode: KeyImageMode | str = KeyImageMode.MIDLINE,
) -> list[Dataset]:
    """Build Secondary Capture key images of one analysed series with the labels burned in.

    Args:
        source_images: Single-frame instances of the series, with pixel data, in any order.
        label_map: Integer array (slices, rows, cols) aligned with ``source_images``.
        structure_values: Structure name -> label value.
        context: The job (identity, dates, series number).
        mode: Which slices to render, as configured for the destination.

    Returns:
        SC images (RGB, Burned In Annotation YES), in one series whose UIDs derive from the job;
        empty when no structure is present (or, per level, no disc).

    Raises:
        ValueError: if the inputs are inconsistent (see :func:`ordered_series`).
    """
    chosen_mode = KeyImageMode(mode)
    images, labels = ordered_series(source_images, label_map)
    found = present_structures(labels, structure_values)
    if not found:
        return []
    names = {value: name for name, value in found}
    source_uid = str(images[0].SeriesInstanceUID)
    series_uid = derive_uid(context.job_key, f"sc/{source_uid}/series", prefix=context.uid_prefix)
    results: list[Dataset] = []
    for number, (index, caption) in enumerate(_choose(labels, found, chosen_mode), start=1):
        source = images[index]
        stored = source.pixel_array
        if source.get("PhotometricInterpretation") == "MONOCHROME1":
            stored = stored.max() - stored  # render white-on-black like MONOCHROME2
        pixels, factor = render(stored, labels[index], names, caption)
        orientation = [float(v) for v in source.ImageOrientationPatient]
        spacing = [float(v) / factor for v in source.PixelSpacing]
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source,
            pixel_array=pixels,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=series_uid,
            series_number=context.key_image_series_number,
            sop_instance_uid=derive_uid(
                context.job_key,
                f"sc/{source_uid}/{chosen_mode.value}/{number}",
                prefix=context.uid_prefix,
            ),
            instance_number=number,
            manufacturer=context.manufacturer,
            pixel_spacing=(spacing[0], spacing[1]),  # type: ignore[arg-type]  # hint says int
            patient_orientation=(
                _orientation_letter(orientation[:3]),
                _orientation_letter(orientation[3:]),
            ),
            series_description=f"AI key images - {AI_LABEL}"[:64],
            content_date=context.created.date(),
            content_time=context.created.time(),
            institution_name=context.institution_name,
            manufacturer_model_name=context.model_name,
            software_versions=context.software_version,
            transfer_syntax_uid=ExplicitVRLittleEndian,
        )
        # An unpaired body part: Laterality (General Series, Type 2C) is then not required.
        sc.BodyPartExamined = source.get("BodyPartExamined") or "LSPINE"
        sc.BurnedInAnnotation = "YES"
        sc.ConversionType = "WSD"
        sc.ImageComments = f"{AI_LABEL}; {caption}"
        pin_creation(sc, context)
        sc.SourceImageSequence = [_reference(source)]
        results.append(sc)
    return results


def _reference(source: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    return item
