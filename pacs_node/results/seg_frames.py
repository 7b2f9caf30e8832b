"""The frames of a DICOM SEG, encoded without a pydicom data set per frame.

highdicom's ``Segmentation`` builds one data set per frame, packs each frame on its own and
indexes every frame; pydicom then encodes the hundreds of items element by element. For a spine
series that is nearly all of a SEG's cost. Here each per-frame item is joined from byte strings
that pydicom encodes once per slice or per segment, and a frame's pixels are compared and packed
only over the rows its structure occupies (:func:`~pacs_node.results.source.structure_rows`).

What is written is what highdicom writes for single-frame sources in the patient coordinate
system with empty frames omitted: the same frame order, dimension index values, per-frame items,
shared functional groups and pixel packing (tests/unit/results/test_seg_encoding.py compares
the two files). One deliberate difference: an odd-length Pixel Data is padded with 00H as PS3.5 6.2
requires (by pydicom), where highdicom appends an ASCII ``0``.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom import DataElement, Dataset
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.tag import Tag
from pydicom.valuerep import format_number_as_ds

from pacs_node.results import codes
from pacs_node.results.source import StructureRows

_ITEM = struct.Struct("<HHL")
"""Item tag (FFFE,E000) and the item's length."""
_SHORT_ELEMENT = struct.Struct("<HH2sH")
"""Tag, VR and 2-byte length of an element (Explicit VR Little Endian)."""
_SEQUENCE = struct.Struct("<HH2sHL")
"""Tag, VR ``SQ``, reserved bytes and 4-byte length of a sequence."""

_PER_FRAME_FUNCTIONAL_GROUPS = Tag(0x52009230)


@dataclass(frozen=True)
class _Frame:
    """One frame: the structures it shows on one source slice, and where it sits in the
    dimensions (its segment and the rank of its slice)."""

    structures: tuple[StructureRows, ...]
    position: int
    segment: int | None

    @property
    def index(self) -> int:
        """The source slice."""
        return self.structures[0].index

    @property
    def dimension_index_values(self) -> tuple[int, ...]:
        """(segment, position) for a binary SEG, (position,) for a label map."""
        return (self.position,) if self.segment is None else (self.segment, self.position)


def add_frames(
    dataset: Dataset,
    images: Sequence[Dataset],
    labels: np.ndarray,
    located: Sequence[StructureRows],
    numbers: Mapping[int, int],
    *,
    binary: bool,
    dimension_organization_uid: str,
) -> None:
    """Add the functional groups, the dimensions, the frame count and the pixel data of a SEG.

    Args:
        dataset: The SEG, with its other modules.
        images: The source slices, in the order of ``labels``.
        labels: The label map (slices, rows, cols).
        located: Where each structure lies in ``labels`` (``structure_rows``).
        numbers: Label value -> segment number, for every value in ``located``.
        binary: One bit plane per segment (``BINARY``), else one label map per slice.
        dimension_organization_uid: UID of the frames' dimension organization.

    Raises:
        ValueError: if the slices differ in orientation or two of them share a position.
    """
    orientation = hd.PlaneOrientationSequence(
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        image_orientation=images[0].ImageOrientationPatient,
    )
    if any(image.ImageOrientationPatient != images[0].ImageOrientationPatient for image in images):
        raise ValueError("source images differ in orientation")
    positions = [
        hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT, image.ImagePositionPatient)
        for image in images
    ]
    coordinates = np.array([position[0].ImagePositionPatient for position in positions])
    cosines = orientation[0].ImageOrientationPatient
    frames = _frames(located, numbers, _plane_order(coordinates, cosines), binary=binary)
    segment_count = len(numbers)
    # As highdicom: with one segment, its identification is shared, not repeated per frame.
    shared_segment = 1 if binary and segment_count == 1 else None
    dataset.SharedFunctionalGroupsSequence = [
        _shared_groups(images[0], orientation, coordinates, shared_segment)
    ]
    dataset.DimensionIndexSequence = _dimension_index(binary, dimension_organization_uid)
    organization = Dataset()
    organization.DimensionOrganizationUID = dimension_organization_uid
    dataset.DimensionOrganizationSequence = [organization]
    if (not binary or segment_count == 1) and _is_volume(coordinates, cosines, located):
        dataset.DimensionOrganizationType = "3D"
    items = b"".join(_per_frame_items(frames, images, positions, binary and shared_segment is None))
    dataset[_PER_FRAME_FUNCTIONAL_GROUPS] = RawDataElement(
        _PER_FRAME_FUNCTIONAL_GROUPS, "SQ", len(items), items, 0, False, True
    )
    # pydicom writes the raw per-frame items as they are only if the data set says it was
    # encoded in the file's transfer syntax and character set.
    charset = dataset.get("SpecificCharacterSet")
    dataset.set_original_encoding(
        False, True, convert_encodings(charset) if charset else default_encoding
    )
    dataset.NumberOfFrames = len(frames)
    pixels = _binary_pixels(labels, frames) if binary else _labelmap_pixels(labels, frames, numbers)
    dataset.add(DataElement(0x7FE00010, "OB", pixels))


def _plane_order(coordinates: np.ndarray, cosines: Sequence[float]) -> dict[int, int]:
    """Slice -> rank along the volume's normal, as highdicom sorts the planes of a SEG."""
    normal = hd.spatial.get_normal_vector(
        cosines, index_convention=hd.spatial.VOLUME_INDEX_CONVENTION
    )
    distances = (normal[None] @ coordinates.T).squeeze(0)
    _, order = np.unique(distances, return_index=True)
    if len(order) != len(coordinates):
        raise ValueError("two source images share a position")
    return {int(index): rank for rank, index in enumerate(order)}


def _frames(
    located: Sequence[StructureRows],
    numbers: Mapping[int, int],
    rank: Mapping[int, int],
    *,
    binary: bool,
) -> list[_Frame]:
    """The frames in highdicom's order: per segment (binary) then by slice rank; a slice's
    position index counts only the slices that hold a structure."""
    planes = sorted({rows.index for rows in located}, key=rank.__getitem__)
    position = {index: number for number, index in enumerate(planes, start=1)}
    if binary:
        return sorted(
            (_Frame((rows,), position[rows.index], numbers[rows.value]) for rows in located),
            key=lambda frame: (frame.segment, frame.position),
        )
    on_plane: dict[int, list[StructureRows]] = defaultdict(list)
    for rows in located:
        on_plane[rows.index].append(rows)
    return [_Frame(tuple(on_plane[index]), position[index], None) for index in planes]


def _shared_groups(
    source: Dataset,
    orientation: hd.PlaneOrientationSequence,
    coordinates: np.ndarray,
    segment: int | None,
) -> Dataset:
    """Shared functional groups: orientation, pixel measures (with the slice spacing computed
    from the positions when the source has none), and the segment when there is only one."""
    measures = hd.PixelMeasuresSequence(
        pixel_spacing=source.PixelSpacing,
        slice_thickness=source.SliceThickness,
        spacing_between_slices=source.get("SpacingBetweenSlices"),
    )
    if "SpacingBetweenSlices" not in measures[0]:
        spacing, _ = hd.spatial.get_volume_positions(
            image_positions=coordinates.tolist(),
            image_orientation=orientation[0].ImageOrientationPatient,
        )
        if spacing is not None:
            measures[0].SpacingBetweenSlices = format_number_as_ds(spacing)
    item = Dataset()
    item.PlaneOrientationSequence = orientation
    item.PixelMeasuresSequence = measures
    if segment is not None:
        item.SegmentIdentificationSequence = [_segment_identification(segment)]
    return item


def _dimension_index(binary: bool, uid: str) -> list[Dataset]:
    """Dimension Index Sequence: the segment (binary only), then the image position."""
    dimensions = [
        (0x0062000B, 0x0062000A, "Referenced Segment Number"),
        (0x00200032, 0x00209113, "Image Position Patient"),
    ]
    items = []
    for pointer, group, label in dimensions[0 if binary else 1 :]:
        item = Dataset()
        item.DimensionIndexPointer = pointer
        item.FunctionalGroupPointer = group
        item.DimensionOrganizationUID = uid
        item.DimensionDescriptionLabel = label
        items.append(item)
    return items


def _is_volume(
    coordinates: np.ndarray, cosines: Sequence[float], located: Sequence[StructureRows]
) -> bool:
    """Whether highdicom calls the frames of one channel a 3D volume: the slices that hold a
    structure (in source order) are more than one and regularly spaced."""
    planes = sorted({rows.index for rows in located})
    if len(planes) < 2:
        return False
    spacing, _ = hd.spatial.get_volume_positions(
        image_positions=coordinates[planes].tolist(), image_orientation=cosines, sort=False
    )
    return spacing is not None and spacing > 0.0


def _encoded(element: DataElement) -> bytes:
    """``element`` as pydicom writes it in Explicit VR Little Endian."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_data_element(buffer, element)
    return buffer.getvalue()


def _element(tag: int, vr: str, value: bytes) -> bytes:
    """An element of a VR with a 2-byte length, ``value`` already padded to even length."""
    return _SHORT_ELEMENT.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value


def _sequence(tag: int, item: bytes) -> bytes:
    """A sequence of one item, ``item`` being its encoded elements; defined lengths, as pydicom
    writes them."""
    body = _ITEM.pack(0xFFFE, 0xE000, len(item)) + item
    return _SEQUENCE.pack(tag >> 16, tag & 0xFFFF, b"SQ", 0, len(body)) + body


def _uid(value: str) -> bytes:
    """A UI value, padded with NUL to even length."""
    encoded = value.encode("ascii")
    return encoded + b"\0" * (len(encoded) % 2)


def _segment_identification(segment: int) -> Dataset:
    item = Dataset()
    item.ReferencedSegmentNumber = segment
    return item


def _per_frame_items(
    frames: Sequence[_Frame],
    images: Sequence[Dataset],
    positions: Sequence[hd.PlanePositionSequence],
    per_frame_segment: bool,
) -> list[bytes]:
    """The encoded Per-Frame Functional Groups items: derivation from the source slice, frame
    content (dimension index values), plane position and, if ``per_frame_segment``, segment
    identification. Elements are in tag order within each item."""
    locations_preserved = _element(0x0028135A, "CS", b"YES ")
    purpose = _encoded(DataElement(0x0040A170, "SQ", [codes.SOURCE_IMAGE_FOR_PROCESSING]))
    derivation_code = _encoded(DataElement(0x00089215, "SQ", [codes.SEGMENTATION_DERIVATION]))
    derivation, position = {}, {}
    for index in {frame.index for frame in frames}:
        source = b"".join(
            (
                _element(0x00081150, "UI", _uid(images[index].SOPClassUID)),
                _element(0x00081155, "UI", _uid(images[index].SOPInstanceUID)),
                locations_preserved,
                purpose,
            )
        )
        derivation[index] = _sequence(0x00089124, _sequence(0x00082112, source) + derivation_code)
        position[index] = _encoded(DataElement(0x00209113, "SQ", positions[index]))
    segments = {frame.segment for frame in frames if frame.segment is not None}
    identification: dict[int | None, bytes] = {
        segment: _sequence(0x0062000A, _element(0x0062000B, "US", struct.pack("<H", segment)))
        for segment in (segments if per_frame_segment else ())
    }
    items = []
    for frame in frames:
        indices = frame.dimension_index_values
        body = b"".join(
            (
                derivation[frame.index],
                _sequence(
                    0x00209111,
                    _element(0x00209157, "UL", struct.pack(f"<{len(indices)}L", *indices)),
                ),
                position[frame.index],
                identification.get(frame.segment, b""),
            )
        )
        items.append(_ITEM.pack(0xFFFE, 0xE000, len(body)) + body)
    return items


def _binary_pixels(labels: np.ndarray, frames: Sequence[_Frame]) -> bytes:
    """One bit per pixel, least significant first, frames back to back (PS3.5 8.1.1)."""
    rows, cols = labels.shape[1:]
    if cols % 8 == 0:  # every row starts on a byte: pack only the rows of each frame's band
        frame_bytes = np.zeros((len(frames), rows, cols // 8), dtype=np.uint8)
        for band_bytes, frame in zip(frame_bytes, frames, strict=True):
            (where,) = frame.structures
            band_bytes[where.top : where.bottom] = np.packbits(
                labels[where.index, where.top : where.bottom] == where.value,
                axis=-1,
                bitorder="little",
            )
        return frame_bytes.tobytes()
    # Frames and rows start mid-byte: pack whole frames, eight at a time to fill whole bytes.
    packed = []
    for start in range(0, len(frames), 8):
        group = frames[start : start + 8]
        bits = np.zeros((len(group), rows, cols), dtype=bool)
        for frame_bits, frame in zip(bits, group, strict=True):
            (where,) = frame.structures
            np.equal(
                labels[where.index, where.top : where.bottom],
                where.value,
                out=frame_bits[where.top : where.bottom],
            )
        packed.append(np.packbits(bits, bitorder="little"))
    return np.concatenate(packed).tobytes()


def _labelmap_pixels(
    labels: np.ndarray, frames: Sequence[_Frame], numbers: Mapping[int, int]
) -> bytes:
    """One byte per pixel: the segment number, 0 for background."""
    pixels = np.zeros((len(frames), *labels.shape[1:]), dtype=np.uint8)
    for frame_pixels, frame in zip(pixels, frames, strict=True):
        for where in frame.structures:
            np.copyto(
                frame_pixels[where.top : where.bottom],
                numbers[where.value],
                where=labels[where.index, where.top : where.bottom] == where.value,
            )
    return pixels.tobytes()
