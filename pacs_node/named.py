"""A registry of configured peers by their unique names (destinations, sources), the grammar of
those names and of their DICOM addresses."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Generic, Protocol, TypeVar

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A peer's name: 1-64 of A-Z a-z 0-9 _ . - (what a delivery records, what commands name)."""


def check_address(what: str, name: str, host: str, port: int) -> None:
    """A peer's name, host and port as configured.

    Raises:
        ValueError: naming the peer (``what``: "destination", "source") and the bad part.
    """
    if NAME_RE.fullmatch(name) is None:
        raise ValueError(f"{what} name {name!r} is not 1-64 of A-Z a-z 0-9 _ . -")
    if not host:
        raise ValueError(f"{what} {name}: the host is empty")
    if not 0 < port <= 65535:
        raise ValueError(f"{what} {name}: port {port} is out of range")


def split_ae_address(address: str) -> tuple[str, str, int] | None:
    """``AE@host:port`` as (AE title, host, port); None when the text is not of that form."""
    ae, at, host_port = address.partition("@")
    host, colon, port = host_port.rpartition(":")
    if not (at and colon and port.isdigit()):
        return None
    return ae.strip(), host, int(port)


class Named(Protocol):
    """Anything with a name."""

    @property
    def name(self) -> str:
        """Its unique name."""


T = TypeVar("T", bound=Named)


@dataclass(frozen=True)
class Registry(Generic[T]):
    """Configured peers by name; names are unique (``what`` and ``how_to_name`` word the error).

    Raises:
        ValueError: on construction, if two peers share a name.
    """

    items: tuple[T, ...] = ()
    what: ClassVar[str] = "peer"
    how_to_name: ClassVar[str] = "NAME=..."

    def __post_init__(self) -> None:
        names = [item.name for item in self.items]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(
                f"{self.what} names must be unique ({', '.join(doubled)}): "
                f"name them as {self.how_to_name}"
            )

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def named(self, name: str) -> T | None:
        """The peer called ``name`` (None if none is configured by that name)."""
        return next((item for item in self.items if item.name == name), None)
