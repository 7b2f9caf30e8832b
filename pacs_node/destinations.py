"""Where results go: named, typed destinations, and the registry the settings build of them.

A destination has a name (what a delivery records, what an admin replays to), a kind (which
results it takes and which sender sends them: :mod:`pacs_node.dispatch`) and an address. Kinds:
``dicom`` (C-STORE of the SEG and SR), ``dicom-key-images`` (C-STORE of burned-in key images and
the SR, for a viewer that cannot show SEG) and ``hl7`` (the ORU^R01 over MLLP to the RIS).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from pacs_node.domain import Channel, ResultKind
from pacs_node.validation import validate_ae_title

KEY_IMAGES_SUFFIX = "/key-images"
HL7_NAME = "hl7"
"""The name of the HL7 endpoint (``PACS_NODE_HL7_ENDPOINT``) among the destinations."""
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class DestinationKind(StrEnum):
    """What a destination is, hence which results it takes and how they are sent."""

    DICOM = "dicom"
    DICOM_KEY_IMAGES = "dicom-key-images"
    HL7 = "hl7"

    @property
    def channel(self) -> Channel:
        """The delivery channel (and job stage) of this kind."""
        return Channel.HL7 if self is DestinationKind.HL7 else Channel.DICOM

    @property
    def result_kinds(self) -> frozenset[ResultKind]:
        """The results a destination of this kind receives."""
        return _TAKES[self]


_TAKES = {
    DestinationKind.DICOM: frozenset({ResultKind.SEG, ResultKind.SR}),
    DestinationKind.DICOM_KEY_IMAGES: frozenset({ResultKind.KEY_IMAGE, ResultKind.SR}),
    DestinationKind.HL7: frozenset({ResultKind.ORU}),
}


@dataclass(frozen=True)
class Destination:
    """A named peer that receives results.

    Attributes:
        name: Unique among the destinations; deliveries refer to it.
        kind: What it takes and how it is sent to.
        host: Its host name or address.
        port: Its TCP port.
        ae_title: Its AE title (the called AE title; DICOM kinds only).
    """

    name: str
    kind: DestinationKind
    host: str
    port: int
    ae_title: str = ""

    def __post_init__(self) -> None:
        if _NAME_RE.fullmatch(self.name) is None:
            raise ValueError(f"destination name {self.name!r} is not 1-64 of A-Z a-z 0-9 _ . -")
        if not self.host:
            raise ValueError(f"destination {self.name}: the host is empty")
        if not 0 < self.port <= 65535:
            raise ValueError(f"destination {self.name}: port {self.port} is out of range")
        if self.kind.channel is Channel.DICOM:
            validate_ae_title(self.ae_title)

    @classmethod
    def dicom(
        cls, ae_title: str, host: str, port: int, *, key_images: bool = False, name: str = ""
    ) -> Destination:
        """A DICOM peer, named after its AE title unless ``name`` is given.

        Raises:
            ValueError: if a part is invalid.
        """
        kind = DestinationKind.DICOM_KEY_IMAGES if key_images else DestinationKind.DICOM
        return cls(name or ae_title.strip(), kind, host, port, ae_title.strip())

    @classmethod
    def hl7(cls, host: str, port: int) -> Destination:
        """The RIS's MLLP listener.

        Raises:
            ValueError: if a part is invalid.
        """
        return cls(HL7_NAME, DestinationKind.HL7, host, port)

    @classmethod
    def parse_dicom(cls, text: str) -> Destination:
        """Parse ``[NAME=]AE@host:port[/key-images]``.

        Raises:
            ValueError: if the text is not of that form.
        """
        text = text.strip()
        name, _, address = text.rpartition("=")
        key_images = address.endswith(KEY_IMAGES_SUFFIX)
        ae, at, host_port = address.removesuffix(KEY_IMAGES_SUFFIX).partition("@")
        host, colon, port = host_port.rpartition(":")
        if not (at and colon and port.isdigit()):
            raise ValueError(f"destination {text!r} is not [NAME=]AE@host:port[/key-images]")
        return cls.dicom(ae, host, int(port), key_images=key_images, name=name)

    @classmethod
    def parse_hl7(cls, text: str) -> Destination:
        """Parse ``host:port``.

        Raises:
            ValueError: if the text is not of that form.
        """
        host, colon, port = text.strip().rpartition(":")
        if not (colon and port.isdigit()):
            raise ValueError(f"endpoint {text!r} is not host:port")
        return cls.hl7(host, int(port))

    def takes(self, kind: ResultKind) -> bool:
        """True if results of ``kind`` are delivered here."""
        return kind in self.kind.result_kinds

    def __str__(self) -> str:
        called = f"{self.ae_title}@" if self.ae_title else ""
        return f"{self.name} ({called}{self.host}:{self.port})"


@dataclass(frozen=True)
class Destinations:
    """The registry: every configured destination, by name."""

    items: tuple[Destination, ...] = ()

    def __post_init__(self) -> None:
        names = [d.name for d in self.items]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(
                f"destination names must be unique ({', '.join(doubled)}): "
                "name them as NAME=AE@host:port"
            )

    def __iter__(self) -> Iterator[Destination]:
        return iter(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def named(self, name: str) -> Destination | None:
        """The destination called ``name`` (None if none is configured by that name)."""
        return next((d for d in self.items if d.name == name), None)

    def taking(self, kind: ResultKind) -> list[Destination]:
        """The destinations that receive results of ``kind``."""
        return [d for d in self.items if d.takes(kind)]

    def on(self, channel: Channel) -> list[Destination]:
        """The destinations delivered to on ``channel``."""
        return [d for d in self.items if d.kind.channel is channel]
