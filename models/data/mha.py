"""Minimal MetaImage (``.mha``) reader and writer with numpy (no SimpleITK).

Supports single-file ``.mha`` images (``ElementDataFile = LOCAL``), raw or zlib-compressed, with
scalar element types. Arrays are returned in numpy order ``(z, y, x)``; spacing, origin and the
direction matrix are returned in MetaImage (x, y, z) order.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_TYPES = {
    "MET_UCHAR": np.uint8,
    "MET_CHAR": np.int8,
    "MET_USHORT": np.uint16,
    "MET_SHORT": np.int16,
    "MET_UINT": np.uint32,
    "MET_INT": np.int32,
    "MET_FLOAT": np.float32,
    "MET_DOUBLE": np.float64,
}


@dataclass
class MetaImage:
    """A 3D image: voxels (z, y, x) plus geometry in (x, y, z) order."""

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def read_mha(path: str | Path) -> MetaImage:
    """Read a single-file MetaImage.

    Raises:
        OSError: if the file cannot be read.
        ValueError: if the header is unsupported or the data size is wrong.
    """
    raw = Path(path).read_bytes()
    header: dict[str, str] = {}
    position = 0
    while True:
        end = raw.index(b"\n", position)
        line = raw[position:end].decode("ascii").strip()
        position = end + 1
        if "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            header[key] = value
            if key == "ElementDataFile":
                break
    if header.get("ElementDataFile") != "LOCAL":
        raise ValueError("only ElementDataFile = LOCAL is supported")
    if header.get("ElementNumberOfChannels", "1") != "1":
        raise ValueError("only scalar images are supported")
    if header["ElementType"] not in _TYPES:
        raise ValueError(f"unsupported ElementType {header['ElementType']}")
    dtype = np.dtype(_TYPES[header["ElementType"]])
    if header.get("BinaryDataByteOrderMSB", header.get("ElementByteOrderMSB", "False")) == "True":
        dtype = dtype.newbyteorder(">")
    payload = raw[position:]
    if header.get("CompressedData", "False") == "True":
        payload = zlib.decompress(payload)
    dims = [int(v) for v in header["DimSize"].split()]
    if len(dims) != 3:
        raise ValueError("only 3D images are supported")
    count = int(np.prod(dims))
    if len(payload) < count * dtype.itemsize:
        raise ValueError("data shorter than DimSize says")
    array = np.frombuffer(payload, dtype=dtype, count=count).reshape(dims[::-1])
    direction_key = "TransformMatrix" if "TransformMatrix" in header else "Orientation"
    return MetaImage(
        array=array.astype(dtype.newbyteorder("=")),
        spacing=_floats(header.get("ElementSpacing", "1 1 1"), 3),
        origin=_floats(header.get("Offset", header.get("Origin", "0 0 0")), 3),
        direction=_floats(header.get(direction_key, "1 0 0 0 1 0 0 0 1"), 9),
    )


def write_mha(image: MetaImage, path: str | Path, compress: bool = True) -> None:
    """Write a single-file MetaImage.

    Raises:
        OSError: if the file cannot be written.
        ValueError: if the array is not 3D or its dtype is unsupported.
    """
    if image.array.ndim != 3:
        raise ValueError("only 3D images are supported")
    names = {np.dtype(v): k for k, v in _TYPES.items()}
    dtype = image.array.dtype.newbyteorder("=")
    if dtype not in names:
        raise ValueError(f"unsupported dtype {dtype}")
    data = np.ascontiguousarray(image.array, dtype=dtype.newbyteorder("<")).tobytes()
    if compress:
        data = zlib.compress(data)
    lines = [
        "ObjectType = Image",
        "NDims = 3",
        "BinaryData = True",
        "BinaryDataByteOrderMSB = False",
        f"CompressedData = {compress}",
        f"TransformMatrix = {_text(image.direction)}",
        f"Offset = {_text(image.origin)}",
        f"ElementSpacing = {_text(image.spacing)}",
        f"DimSize = {_text(image.array.shape[::-1])}",
        f"ElementType = {names[dtype]}",
        "ElementDataFile = LOCAL",
    ]
    Path(path).write_bytes(("\n".join(lines) + "\n").encode("ascii") + data)


def _floats(text: str, count: int) -> tuple[float, ...]:
    values = tuple(float(v) for v in text.split())
    if len(values) != count:
        raise ValueError(f"expected {count} values, got {text!r}")
    return values


def _text(values: tuple[float, ...] | tuple[int, ...]) -> str:
    return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
