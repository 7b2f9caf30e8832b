"""Where results go: named, typed destinations, and the registry the settings build of them.

A destination has a name (what a delivery records, what an admin replays to), a kind (which
results it takes and which sender sends them: :mod:`pacs_node.dispatch`) and an address. Kinds:
``dicom`` (C-STORE of the SEG and SR), ``dicom-key-images`` (C-STORE of burned-in key images and
the SR, for a viewer that cannot show SEG), ``dicomweb`` (STOW-RS of the SEG and SR to a DICOMweb
server) and ``hl7`` (the ORU^R01 over MLLP to the RIS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import ClassVar
from urllib.parse import SplitResult, urlsplit

from pacs_node.domain import Channel, ResultKind
from pacs_node.named import Registry, check_address, split_ae_address
from pacs_node.validation import validate_ae_title

KEY_IMAGES_SUFFIX = "/key-images"
COMMIT_SUFFIX = "/commit"
"""Ask a DICOM destination for storage commitment after each C-STORE (either suffix order)."""
HL7_NAME = "hl7"
"""The name of the HL7 endpoint (``PACS_NODE_HL7_ENDPOINT``) among the destinations."""
# A DICOMweb entry: an optional NAME= before a URL.
_WEB_ENTRY_RE = re.compile(r"(?:(?P<name>[^=:/@]*)=)?(?P<url>[A-Za-z][A-Za-z0-9+.-]*://.*)", re.S)
WEB_CREDENTIALS_HINT = (
    "credentials do not go in the URL: set them in PACS_NODE_DICOMWEB_CREDENTIALS "
    "or PACS_NODE_DICOMWEB_CREDENTIALS_FILE"
)


class Secret:
    """A credential that never shows itself: ``str``, ``repr`` and formatting give ``***``.

    :meth:`reveal` gives the value, to the one place that sends it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself."""
        return self._value

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return "Secret('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class DestinationKind(StrEnum):
    """What a destination is, hence which results it takes and how they are sent."""

    DICOM = "dicom"
    DICOM_KEY_IMAGES = "dicom-key-images"
    DICOMWEB = "dicomweb"
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
    DestinationKind.DICOMWEB: frozenset({ResultKind.SEG, ResultKind.SR}),
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
        commit: Ask it for storage commitment after the C-STORE (DICOM kinds only).
        url: Its DICOMweb base URL (kind ``dicomweb``; host and port are taken from it), without
            credentials, query or fragment.
        authorization: The ``Authorization`` header it expects (kind ``dicomweb``); never shown.
        ca_file: The CA bundle its https certificate is checked against (None: certifi's).
    """

    name: str
    kind: DestinationKind
    host: str
    port: int
    ae_title: str = ""
    commit: bool = False
    url: str = ""
    authorization: Secret | None = field(default=None, repr=False)
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        check_address("destination", self.name, self.host, self.port)
        if self.kind is DestinationKind.DICOMWEB:
            _web_url(self.url, self.name)
        elif self.kind.channel is Channel.DICOM:
            validate_ae_title(self.ae_title)

    @classmethod
    def dicom(
        cls,
        ae_title: str,
        host: str,
        port: int,
        *,
        key_images: bool = False,
        name: str = "",
        commit: bool = False,
    ) -> Destination:
        """A DICOM peer, named after its AE title unless ``name`` is given.

        Raises:
            ValueError: if a part is invalid.
        """
        kind = DestinationKind.DICOM_KEY_IMAGES if key_images else DestinationKind.DICOM
        return cls(name or ae_title.strip(), kind, host, port, ae_title.strip(), commit)

    @classmethod
    def dicomweb(cls, url: str, *, name: str = "") -> Destination:
        """A DICOMweb server at its base URL, named after its host unless ``name`` is given.

        Raises:
            ValueError: if the URL is not ``http(s)://host[:port][/path]`` or holds credentials.
        """
        parts = _web_url(url.strip(), name)
        host = parts.hostname or ""
        port = (443 if parts.scheme == "https" else 80) if parts.port is None else parts.port
        base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        return cls(name or host, DestinationKind.DICOMWEB, host, port, url=base)

    @classmethod
    def hl7(cls, host: str, port: int) -> Destination:
        """The RIS's MLLP listener.

        Raises:
            ValueError: if a part is invalid.
        """
        return cls(HL7_NAME, DestinationKind.HL7, host, port)

    @classmethod
    def parse_dicom(cls, text: str) -> Destination:
        """Parse ``[NAME=]AE@host:port[/key-images][/commit]`` (the suffixes in either order).

        Raises:
            ValueError: if the text is not of that form.
        """
        text = text.strip()
        name, _, address = text.rpartition("=")
        address, commit = _strip_suffix(address, COMMIT_SUFFIX)
        address, key_images = _strip_suffix(address, KEY_IMAGES_SUFFIX)
        if not commit:
            address, commit = _strip_suffix(address, COMMIT_SUFFIX)
        parts = split_ae_address(address)
        if parts is None:
            raise ValueError(
                f"destination {text!r} is not [NAME=]AE@host:port[/key-images][/commit]"
            )
        ae, host, port = parts
        return cls.dicom(ae, host, port, key_images=key_images, name=name, commit=commit)

    @classmethod
    def parse(cls, text: str) -> Destination:
        """Parse a ``PACS_NODE_DESTINATIONS`` entry: a DICOMweb URL or a DICOM address.

        Raises:
            ValueError: if the text is neither.
        """
        return cls.parse_dicomweb(text) if "://" in text else cls.parse_dicom(text)

    @classmethod
    def parse_dicomweb(cls, text: str) -> Destination:
        """Parse ``[NAME=]http(s)://host[:port][/path]``.

        Raises:
            ValueError: if the text is not of that form (never quoting credentials).
        """
        match = _WEB_ENTRY_RE.fullmatch(text.strip())
        if match is None:
            raise ValueError("a DICOMweb destination is not [NAME=]http(s)://host[:port][/path]")
        return cls.dicomweb(match["url"], name=match["name"] or "")

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
        if self.url:
            return f"{self.name} ({self.url})"
        called = f"{self.ae_title}@" if self.ae_title else ""
        return f"{self.name} ({called}{self.host}:{self.port})"


def _strip_suffix(text: str, suffix: str) -> tuple[str, bool]:
    """``text`` without ``suffix``, and whether it had it."""
    return text.removesuffix(suffix), text.endswith(suffix)


@dataclass(frozen=True)
class Destinations(Registry[Destination]):
    """The registry: every configured destination, by name."""

    what: ClassVar[str] = "destination"
    how_to_name: ClassVar[str] = "NAME=AE@host:port or NAME=URL"

    def taking(self, kind: ResultKind) -> list[Destination]:
        """The destinations that receive results of ``kind``."""
        return [d for d in self.items if d.takes(kind)]

    def on(self, channel: Channel) -> list[Destination]:
        """The destinations delivered to on ``channel``."""
        return [d for d in self.items if d.kind.channel is channel]


def _web_url(url: str, name: str) -> SplitResult:
    """``url`` split, once it is an http(s) URL with a host and no credentials, query or fragment.

    Raises:
        ValueError: naming the destination; the URL is never quoted (it may hold a password).
    """
    who = f"destination {name}" if name else "a DICOMweb destination"
    if "@" in url:
        raise ValueError(f"{who}: {WEB_CREDENTIALS_HINT}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{who}: the URL must start with http:// or https://")
    if not parts.hostname:
        raise ValueError(f"{who}: the URL has no host")
    if "?" in url or "#" in url:
        raise ValueError(f"{who}: the URL must not have a query or fragment")
    try:
        parts.port  # noqa: B018 - read to be validated
    except ValueError:  # not a number, or out of range; the message would quote it
        raise ValueError(f"{who}: the URL's port is not a number from 1 to 65535") from None
    return parts
