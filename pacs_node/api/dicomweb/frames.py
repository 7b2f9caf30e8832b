"""Frames of a held image: native (uncompressed, little endian) or, when the caller accepts any
transfer syntax, as stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import pack_bits, pixel_array
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pacs_node.intake import expected_pixel_bytes

NATIVE_LITTLE_ENDIAN = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})


class NoSuchFrameError(LookupError):
    """A frame number is outside the image (or it has no pixel data)."""


class FramesNotDecodableError(ValueError):
    """Compressed frames this node cannot decompress."""


@dataclass(frozen=True)
class Frames:
    """Frames as sent: their bytes and the transfer syntax they are in."""

    content: list[bytes]
    transfer_syntax: UID


def frame_count(ds: Dataset) -> int:
    """How many frames the image has (0 without pixel data)."""
    if "PixelData" not in ds:
        return 0
    return int(ds.get("NumberOfFrames", 1) or 1)


def frames(ds: Dataset, numbers: Sequence[int], *, as_stored: bool) -> Frames:
    """The frames ``numbers`` (1-based) of ``ds``; compressed ones as stored when ``as_stored``,
    else decompressed.

    Raises:
        NoSuchFrameError: if a number is outside the image.
        FramesNotDecodableError: if compressed frames must be decompressed and cannot be.
    """
    count = frame_count(ds)
    if any(not 1 <= number <= count for number in numbers):
        raise NoSuchFrameError(f"the image has {count} frame(s)")
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    if syntax.is_encapsulated and as_stored:
        stored = list(generate_frames(ds.PixelData, number_of_frames=count))
        return Frames([stored[number - 1] for number in numbers], syntax)
    if syntax in NATIVE_LITTLE_ENDIAN and int(ds.BitsAllocated) % 8 == 0:
        size = (expected_pixel_bytes(ds) or 0) // count
        data = ds.PixelData
        return Frames(
            [data[(number - 1) * size : number * size] for number in numbers],
            ExplicitVRLittleEndian,
        )
    return Frames([_decoded(ds, number - 1) for number in numbers], ExplicitVRLittleEndian)


def _decoded(ds: Dataset, index: int) -> bytes:
    """One frame decoded to native little endian (bit-packed per frame for 1-bit images)."""
    try:
        array = pixel_array(ds, index=index)
    except Exception as exc:  # no decoder plugin for the syntax, or corrupt data
        raise FramesNotDecodableError(f"cannot decode frames ({type(exc).__name__})") from exc
    if int(ds.BitsAllocated) == 1:
        return pack_bits(array, pad=False)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
