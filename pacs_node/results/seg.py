"""DICOM Segmentation (highdicom) of the analysed sagittal series.

One segment per structure the model found, coded with SNOMED CT anatomy, algorithm identification
(model name, version, checkpoint hash) and references to the exact source instances and their frame
of reference, so a viewer overlays it on the source series. Empty frames are omitted. Identity and
dates come from the job, so a rebuilt SEG is byte-identical.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset

from pacs_node.results import codes
from pacs_node.results.identity import derive_uid
from pacs_node.results.inputs import AI_LABEL, AlgorithmInfo, ResultContext, SegmentationType
from pacs_node.results.palette import structure_colour
from pacs_node.results.source import ordered_series, present_structures, with_type2_attributes
from pacs_node.results.stamp import pin_creation, pin_dimension_organization

CONTENT_LABEL = "AI_SPINE_SEG"


def segment_tracking_uid(context: ResultContext, structure: str) -> str:
    """Tracking UID of a structure's segment; the SR's measurement group for it reuses it."""
    return derive_uid(context.job_key, f"track/{structure}", prefix=context.uid_prefix)


def seg_uids(
    context: ResultContext, source_series_uid: str, segmentation_type: SegmentationType
) -> tuple[str, str]:
    """Return the (Series Instance UID, SOP Instance UID) of a job's SEG over one source series."""
    base = f"seg/{source_series_uid}/{segmentation_type.value}"
    return (
        derive_uid(context.job_key, f"{base}/series", prefix=context.uid_prefix),
        derive_uid(context.job_key, f"{base}/instance", prefix=context.uid_prefix),
    )


def _segment_description(
    number: int,
    name: str,
    value: int,
    algorithm: hd.AlgorithmIdentificationSequence,
    context: ResultContext,
) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name,
        segmented_property_category=codes.ANATOMICAL_STRUCTURE,
        segmented_property_type=codes.structure_code(name),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        tracking_uid=segment_tracking_uid(context, name),
        tracking_id=name,
        anatomic_regions=[codes.LUMBAR_SPINE],
        display_color=hd.color.CIELabColor.from_rgb(*structure_colour(value)),
    )


def algorithm_identification(algorithm: AlgorithmInfo) -> hd.AlgorithmIdentificationSequence:
    """Algorithm Identification Sequence for the model (family: artificial intelligence)."""
    return hd.AlgorithmIdentificationSequence(
        name=algorithm.name,
        family=codes.ARTIFICIAL_INTELLIGENCE,
        version=algorithm.version,
        source="pacs-node",
        parameters=algorithm.parameters(),
    )


def build_seg(
    source_images: Sequence[Dataset],
    label_map: np.ndarray,
    structure_values: Mapping[str, int],
    *,
    algorithm: AlgorithmInfo,
    context: ResultContext,
    segmentation_type: SegmentationType | str = SegmentationType.BINARY,
) -> hd.seg.Segmentation:
    """Build the SEG of one analysed source series.

    Args:
        source_images: Single-frame instances of one series (headers suffice), in any order.
        label_map: Integer array (slices, rows, cols); ``label_map[i]`` is the model's labels for
            ``source_images[i]``. Values not in ``structure_values`` count as background.
        structure_values: Structure name (``"L4"``, ``"L4/L5"``, ``"canal"``...) -> label value.
        algorithm: The model that produced ``label_map``.
        context: The job (identity, dates, series numbers).
        segmentation_type: ``"binary"`` (a bit plane per segment) or ``"labelmap"``.

    Returns:
        The Segmentation; segments are numbered 1..n over the structures found, in label-value
        order, and labelled with the structure name.

    Raises:
        ValueError: if the inputs are inconsistent (see :func:`ordered_series`), a structure name
            has no code, or no structure is present in ``label_map``.
    """
    seg_type = SegmentationType(segmentation_type)
    images, labels = ordered_series(source_images, label_map)
    found = present_structures(labels, structure_values)
    if not found:
        raise ValueError("no structure is present in label_map: there is nothing to segment")
    lookup = np.zeros(int(max(labels.max(), max(v for _, v in found))) + 1, dtype=np.uint8)
    for number, (_, value) in enumerate(found, start=1):
        lookup[value] = number
    segment_numbers = lookup[np.clip(labels, 0, None)]
    algorithm_sequence = algorithm_identification(algorithm)
    descriptions = [
        _segment_description(number, name, value, algorithm_sequence, context)
        for number, (name, value) in enumerate(found, start=1)
    ]
    series_uid, sop_uid = seg_uids(context, str(images[0].SeriesInstanceUID), seg_type)
    seg = hd.seg.Segmentation(
        source_images=[with_type2_attributes(images[0]), *images[1:]],
        pixel_array=segment_numbers,
        segmentation_type=(
            hd.seg.SegmentationTypeValues.BINARY
            if seg_type is SegmentationType.BINARY
            else hd.seg.SegmentationTypeValues.LABELMAP
        ),
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
    pin_dimension_organization(
        seg, derive_uid(context.job_key, f"dim/{sop_uid}", prefix=context.uid_prefix)
    )
    return seg
