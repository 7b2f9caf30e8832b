"""Malformed input for the DICOM edge: corrupted data sets and hand-made association requests."""

from __future__ import annotations

import random
import struct

from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage


def mutate(data: bytes, start: int, rng: random.Random) -> bytes:
    """One random corruption of the data set part (after the file meta) of a file."""
    body = bytearray(data[start:])
    kind = rng.randrange(5)
    if kind == 0:  # flip a few bytes
        for _ in range(rng.randint(1, 8)):
            body[rng.randrange(len(body))] = rng.randrange(256)
    elif kind == 1:  # truncate
        body = body[: rng.randrange(len(body))]
    elif kind == 2:  # insert garbage
        at = rng.randrange(len(body))
        body[at:at] = rng.randbytes(rng.randint(1, 64))
    elif kind == 3:  # a wild length field somewhere in the header
        at = rng.randrange(min(len(body) - 4, 400))
        body[at : at + 4] = struct.pack(
            "<I", rng.choice([0xFFFFFFFF, 0x7FFFFFFF, rng.randrange(1 << 32)])
        )
    else:  # overwrite a header run with random bytes
        at = rng.randrange(min(len(body), 400))
        body[at : at + 16] = rng.randbytes(16)
    return data[:start] + bytes(body)


def file_meta_end(data: bytes) -> int:
    """Offset where the data set starts (after preamble, DICM and group 0002)."""
    (group_length,) = struct.unpack("<I", data[140:144])
    return 144 + group_length


def associate_rq(called: bytes = b"LUMBAR_NODE", calling: bytes = b"FUZZER") -> bytes:
    """A minimal valid A-ASSOCIATE-RQ proposing MR storage in explicit little endian."""

    def item(kind: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", kind, 0, len(payload)) + payload

    context = item(
        0x20,
        bytes([1, 0, 0, 0])
        + item(0x30, MRImageStorage.encode())
        + item(0x40, ExplicitVRLittleEndian.encode()),
    )
    user = item(0x50, item(0x51, struct.pack(">I", 16384)) + item(0x52, b"1.2.826.0.1.3680043.9.1"))
    body = (
        struct.pack(">HH", 1, 0)
        + called.ljust(16)
        + calling.ljust(16)
        + bytes(32)
        + item(0x10, b"1.2.840.10008.3.1.1.1")
        + context
        + user
    )
    return struct.pack(">BBI", 1, 0, len(body)) + body


def corrupt_length(data: bytes, tag: bytes, length: int) -> bytes:
    """``data`` with the explicit-VR short length of the first element starting with ``tag``
    (group and element, little endian, then a two-letter VR) set to ``length``: the element
    swallows what follows it."""
    at = data.find(tag)
    if at < 0:
        raise ValueError("tag not found")
    return data[: at + 6] + struct.pack("<H", length) + data[at + 8 :]
