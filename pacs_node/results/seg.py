"""DICOM Segmentation of the analysed sagittal series, as highdicom's ``Segmentation`` writes it.

One segment per structure the model found, coded with SNOMED CT anatomy, algorithm identification
(model name, version, checkpoint hash) and references to the exact source instances and their frame
of reference, so a viewer overlays it on the source series. Empty frames are omitted. Identity and
dates come from the job, so a rebuilt SEG is byte-identical.

The data set is assembled here and in :mod:`pacs_node.results.seg_frames` rather than by
highdicom's constructor, which spends most of a SEG's time on per-frame data sets; the result is
still a :class:`highdicom.seg.Segmentation` (see :class:`_IndexedOnUse`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, SupportsIndex, cast

import highdicom as hd
import numpy as np
from pydicom import DataElement, Dataset
from pydicom.uid import ExplicitVRLittleEndian, SegmentationStorage

from pacs_node.results import codes
from pacs_node.results.identity import derive_uid
from pacs_node.results.inputs import AI_LABEL, AlgorithmInfo, ResultContext, SegmentationType
from pacs_node.results.palette import structure_colour
from pacs_node.results.seg_frames import add_frames
from pacs_node.results.source import (
    named_structures,
    ordered_series,
    structure_rows,
    with_type2_attributes,
)
from pacs_node.results.stamp import pin_creation

CONTENT_LABEL = "AI_SPINE_SEG"

LABEL_MAP_SEGMENTATION_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.66.7"
"""SOP Class UID of a label map SEG (Sup 243)."""


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
        The Segmentation (highdicom's frame index is built on first use, see
        :class:`_IndexedOnUse`); segments are numbered 1..n over the structures found, in
        label-value order, and labelled with the structure name.

    Raises:
        ValueError: if the inputs are inconsistent (see :func:`ordered_series`), a structure name
            has no code, or no structure is present in ``label_map``.
    """
    seg_type = SegmentationType(segmentation_type)
    images, labels = ordered_series(source_images, label_map)
    located = structure_rows(labels, structure_values)
    if not located:
        raise ValueError("no structure is present in label_map: there is nothing to segment")
    found = named_structures(located, structure_values)
    algorithm_sequence = algorithm_identification(algorithm)
    descriptions = [
        _segment_description(number, name, value, algorithm_sequence, context)
        for number, (name, value) in enumerate(found, start=1)
    ]
    series_uid, sop_uid = seg_uids(context, str(images[0].SeriesInstanceUID), seg_type)
    sources = [with_type2_attributes(images[0]), *images[1:]]
    binary = seg_type is SegmentationType.BINARY
    seg = _seg_header(sources, binary, series_uid, sop_uid, context)
    seg.SegmentSequence = descriptions if binary else [_background(descriptions[0]), *descriptions]
    add_frames(
        seg,
        sources,
        labels,
        located,
        {value: number for number, (_, value) in enumerate(found, start=1)},
        binary=binary,
        dimension_organization_uid=derive_uid(
            context.job_key, f"dim/{sop_uid}", prefix=context.uid_prefix
        ),
    )
    pin_creation(seg, context)
    seg.__class__ = _IndexedOnUse
    return cast(_IndexedOnUse, seg)


def _seg_header(
    sources: Sequence[Dataset], binary: bool, series_uid: str, sop_uid: str, context: ResultContext
) -> hd.SOPClass:
    """Every module of the SEG but its segments and frames, as highdicom's ``Segmentation`` writes
    them from ``sources`` (patient, study, series, equipment, references, image pixel)."""
    source = sources[0]
    seg = hd.SOPClass(
        study_instance_uid=source.StudyInstanceUID,
        series_instance_uid=series_uid,
        series_number=context.seg_series_number,
        sop_instance_uid=sop_uid,
        sop_class_uid=SegmentationStorage if binary else LABEL_MAP_SEGMENTATION_STORAGE,
        instance_number=1,
        modality="SEG",
        manufacturer=context.manufacturer,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        patient_id=source.PatientID,
        patient_name=source.PatientName,
        patient_birth_date=source.PatientBirthDate,
        patient_sex=source.PatientSex,
        accession_number=source.AccessionNumber,
        study_id=source.StudyID,
        study_date=source.StudyDate,
        study_time=source.StudyTime,
        referring_physician_name=source.get("ReferringPhysicianName"),
        manufacturer_model_name=context.model_name,
        device_serial_number=context.device_serial_number,
        software_versions=context.software_version,
        specific_character_set=source.get("SpecificCharacterSet"),
        series_description=f"AI spine SEG - {AI_LABEL}"[:64],
        institution_name=context.institution_name,
        content_date=context.created.date(),
        content_time=context.created.time(),
    )
    seg.copy_specimen_information(source)
    seg.copy_patient_and_study_information(source)
    seg.ContributingEquipmentSequence = _contributing_equipment(source)
    seg.SegmentationType = "BINARY" if binary else "LABELMAP"
    seg.ContentLabel = CONTENT_LABEL
    seg.ContentDescription = AI_LABEL
    seg.SegmentsOverlap = "NO"
    seg.FrameOfReferenceUID = source.FrameOfReferenceUID
    seg.PositionReferenceIndicator = source.get("PositionReferenceIndicator")
    seg.ImageType = ["DERIVED", "PRIMARY"]
    seg.PresentationLUTShape = "IDENTITY"
    seg.LossyImageCompression = source.get("LossyImageCompression", "00")
    if seg.LossyImageCompression == "01":
        for keyword in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if keyword in source:
                seg[keyword] = source[keyword]
    bits = 1 if binary else 8
    seg.SamplesPerPixel, seg.PhotometricInterpretation = 1, "MONOCHROME2"
    seg.BitsAllocated = seg.BitsStored = bits
    seg.HighBit, seg.PixelRepresentation = bits - 1, 0
    seg.Rows, seg.Columns = source.Rows, source.Columns
    if not binary:
        seg.add(DataElement(0x00280120, "US", 0))  # Pixel Padding Value
    _add_source_references(seg, sources)
    return seg


def _contributing_equipment(source: Dataset) -> list[hd.ContributingEquipment]:
    """The source's acquisition equipment (when it names a manufacturer), then highdicom."""
    library = hd.ContributingEquipment.for_highdicom()
    try:
        acquisition = hd.ContributingEquipment.for_image_acquisition(source)
    except (AttributeError, TypeError, ValueError):  # highdicom, too, then leaves it out
        return [library]
    return [acquisition, library]


def _add_source_references(seg: Dataset, sources: Sequence[Dataset]) -> None:
    """Source Image Sequence and Referenced Series Sequence: every source instance."""
    references = []
    for source in sources:
        reference = Dataset()
        reference.ReferencedSOPClassUID = source.SOPClassUID
        reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
        references.append(reference)
    seg.SourceImageSequence = references
    series = Dataset()
    series.SeriesInstanceUID = sources[0].SeriesInstanceUID
    series.ReferencedInstanceSequence = references
    seg.ReferencedSeriesSequence = [series]


def _background(first: hd.seg.SegmentDescription) -> hd.seg.SegmentDescription:
    """The background segment (number 0) a label map SEG lists first, as highdicom writes it."""
    background = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Background",
        segmented_property_category=codes.BACKGROUND,
        segmented_property_type=codes.BACKGROUND,
        algorithm_type=first.SegmentAlgorithmType,
        algorithm_identification=first.SegmentationAlgorithmIdentificationSequence,
        display_color=hd.color.CIELabColor(0.0, 0.0, 0.0),
    )
    background.SegmentNumber = 0
    del background.SegmentationAlgorithmIdentificationSequence
    return background


class _IndexedOnUse(hd.seg.Segmentation):
    """A Segmentation whose highdicom frame index is built on first use.

    Wrapping a data set, highdicom indexes every frame in private attributes (about 0.3 s for 900
    frames, most of it parsing the per-frame items); writing the SEG or referencing it from an SR
    never needs that index. The first look-up of a private attribute the object lacks, or a copy,
    completes :meth:`highdicom.seg.Segmentation.from_dataset` in place, which turns the object
    into a plain :class:`highdicom.seg.Segmentation`.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") and not name.startswith("__") and name != "_dict":
            self._index()
            return getattr(self, name)
        return super().__getattr__(name)

    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple[Any, ...]:
        """Pickle and copy as a plain Segmentation (highdicom's state includes the index)."""
        self._index()
        return self.__reduce_ex__(protocol)

    def _index(self) -> None:
        self.__class__ = hd.seg.Segmentation  # type: ignore[assignment]  # no longer lazy
        hd.seg.Segmentation.from_dataset(self, copy=False)
