"""Where studies can be fetched from: named DICOM sources (a PACS the node queries and retrieves
from), and the registry the settings build of them.

A source is ``[NAME=]AE@host:port[/get]`` in ``PACS_NODE_SOURCES``: the node asks it with C-FIND
and has it send a study with C-MOVE to the node's own AE title (the PACS must know that AE title,
host and port), or, with ``/get``, fetches the study itself over the same association with C-GET
(for a PACS that cannot open associations to the node).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from pacs_node.named import Registry, check_address, split_ae_address
from pacs_node.validation import validate_ae_title

GET_SUFFIX = "/get"


class RetrieveMethod(StrEnum):
    """How a source sends a study to the node."""

    MOVE = "move"
    """C-MOVE: the source opens an association to the node's SCP and C-STOREs the study."""
    GET = "get"
    """C-GET: the study comes back on the node's own association."""


@dataclass(frozen=True)
class Source:
    """A DICOM peer the node queries (C-FIND) and retrieves from (C-MOVE or C-GET).

    Attributes:
        name: Unique among the sources; commands and the API name it.
        ae_title: Its AE title (the called AE title).
        host: Its host name or address.
        port: Its TCP port.
        method: C-MOVE (default) or C-GET.
    """

    name: str
    ae_title: str
    host: str
    port: int
    method: RetrieveMethod = RetrieveMethod.MOVE

    def __post_init__(self) -> None:
        check_address("source", self.name, self.host, self.port)
        validate_ae_title(self.ae_title)

    @classmethod
    def parse(cls, text: str) -> Source:
        """Parse ``[NAME=]AE@host:port[/get]``.

        Raises:
            ValueError: if the text is not of that form or a part is invalid.
        """
        text = text.strip()
        name, _, address = text.rpartition("=")
        method = RetrieveMethod.GET if address.endswith(GET_SUFFIX) else RetrieveMethod.MOVE
        parts = split_ae_address(address.removesuffix(GET_SUFFIX))
        if parts is None:
            raise ValueError(f"source {text!r} is not [NAME=]AE@host:port[/get]")
        ae, host, port = parts
        return cls(name or ae, ae, host, port, method)

    def __str__(self) -> str:
        return f"{self.name} ({self.ae_title}@{self.host}:{self.port}, C-{self.method.upper()})"


@dataclass(frozen=True)
class Sources(Registry[Source]):
    """The registry: every configured source, by name."""

    what: ClassVar[str] = "source"
    how_to_name: ClassVar[str] = "NAME=AE@host:port"
