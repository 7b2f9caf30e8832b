"""``multipart/related`` bodies (RFC 2387, PS3.18 §8.6) and the media types around them.

Parsing works on a body already in memory (the STOW route bounds its size); encoding streams one
part at a time, so a retrieved study is never held in memory whole.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

MULTIPART_RELATED = "multipart/related"
DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
OCTET_STREAM = "application/octet-stream"

# token=token or token="quoted string", after a ';'.
_PARAMETER = re.compile(r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)')


class MultipartError(ValueError):
    """A body or header is not the multipart/related message it claims to be."""


@dataclass(frozen=True)
class MediaType:
    """A media type (lower case) with its parameters (names lower case, values unquoted)."""

    type: str
    parameters: dict[str, str] = field(default_factory=dict)

    def matches(self, wanted: str) -> bool:
        """True when this type, a range such as ``*/*`` or ``application/*``, covers ``wanted``."""
        if self.type in ("*", "*/*") or self.type == wanted:
            return True
        return self.type.endswith("/*") and wanted.startswith(self.type[:-1])


def parse_media_type(value: str) -> MediaType:
    """Parse ``type/subtype; name=value; ...`` (one media type).

    Raises:
        MultipartError: if there is no ``type/subtype``.
    """
    head, _, _ = value.partition(";")
    media_type = head.strip().lower()
    if "/" not in media_type and media_type != "*":
        raise MultipartError("not a media type")
    parameters = {
        name.lower(): _unquote(raw) for name, raw in _PARAMETER.findall(value[len(head) :])
    }
    return MediaType(media_type, parameters)


def parse_accept(value: str | None) -> list[MediaType]:
    """The media ranges of an Accept header, in order; ``*/*`` when there is none.

    Raises:
        MultipartError: if a range is malformed.
    """
    if value is None or not value.strip():
        return [MediaType("*/*")]
    return [parse_media_type(item) for item in _split_outside_quotes(value) if item.strip()]


@dataclass(frozen=True)
class Part:
    """One body part: its headers (names lower case) and content."""

    headers: dict[str, str]
    content: bytes

    @property
    def content_type(self) -> MediaType | None:
        """The part's Content-Type, if it has one."""
        value = self.headers.get("content-type")
        return None if value is None else parse_media_type(value)


def parse_multipart(body: bytes | bytearray, boundary: str) -> list[Part]:
    """The parts of a ``multipart`` ``body`` delimited by ``boundary``.

    Raises:
        MultipartError: if the delimiters, part headers or closing delimiter are missing.
    """
    if not boundary:
        raise MultipartError("no boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    first = body.find(delimiter)
    if first < 0 or (first > 0 and body[first - 2 : first] != b"\r\n"):
        raise MultipartError("no opening delimiter")
    view = memoryview(body)
    position = first + len(delimiter)
    parts: list[Part] = []
    while not body.startswith(b"--", position):
        line_end = body.find(b"\r\n", position)
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            raise MultipartError("malformed delimiter line")
        headers_end = (
            line_end
            if body.startswith(b"\r\n\r\n", line_end)
            else body.find(b"\r\n\r\n", line_end + 2)
        )
        if headers_end < 0:
            raise MultipartError("part headers do not end")
        headers = _part_headers(body[line_end + 2 : headers_end])
        content_start = headers_end + 4
        following = body.find(b"\r\n" + delimiter, content_start)
        if following < 0:
            raise MultipartError("no closing delimiter")
        parts.append(Part(headers, bytes(view[content_start:following])))
        position = following + 2 + len(delimiter)
    return parts


def _part_headers(block: bytes | bytearray) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise MultipartError("malformed part header")
        headers[name.strip().lower()] = value.strip()
    return headers


def new_boundary() -> str:
    """A boundary that no content can contain by chance."""
    return f"pacs-node-{secrets.token_hex(16)}"


def content_type(part_type: str, boundary: str, **parameters: str) -> str:
    """The Content-Type of a ``multipart/related`` message of ``part_type`` parts."""
    extra = "".join(f"; {name.replace('_', '-')}={value}" for name, value in parameters.items())
    return f'{MULTIPART_RELATED}; type="{part_type}"; boundary={boundary}{extra}'


def encode_parts(parts: Iterable[tuple[str, bytes]], boundary: str) -> Iterator[bytes]:
    """The body of a multipart message, one chunk per part; ``parts`` are (Content-Type,
    content) pairs."""
    delimiter = f"--{boundary}".encode("latin-1")
    for part_type, content in parts:
        yield (
            b"".join(
                (
                    delimiter,
                    b"\r\nContent-Type: ",
                    part_type.encode("latin-1"),
                    b"\r\n\r\n",
                    content,
                )
            )
            + b"\r\n"
        )
    yield delimiter + b"--\r\n"


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


def _split_outside_quotes(value: str) -> list[str]:
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return items
