"""QIDO-RS query parameters (PS3.18 §8.3.4): matching keys, ``includefield``, ``limit`` and
``offset``, and attribute matching (PS3.4 C.2.2.2): single value, UID list, ``*``/``?``
wildcards, date and time ranges, universal (empty) matching. Person names match without regard to
case."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.tag import BaseTag, Tag

CONTROL_PARAMETERS = frozenset({"limit", "offset", "includefield", "fuzzymatching"})
INCLUDE_ALL = "all"
_RANGE_VRS = frozenset({"DA", "TM", "DT"})
_HEX_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")


class QueryError(ValueError):
    """A query parameter is unknown or malformed (the value is not echoed)."""


@dataclass(frozen=True)
class Filter:
    """One matching key: its tag and the value to match (empty: universal matching)."""

    tag: BaseTag
    value: str

    def matches(self, ds: Dataset) -> bool:
        """True when ``ds`` satisfies this key."""
        if not self.value or self.value == "*":
            return True
        if self.tag not in ds:
            return False
        elem = ds[self.tag]
        values = elem.value if elem.VM > 1 else [elem.value]
        return any(_matches(elem.VR, str(v), self.value) for v in values if v is not None)


@dataclass(frozen=True)
class Query:
    """A parsed QIDO-RS query."""

    filters: list[Filter] = field(default_factory=list)
    include: list[BaseTag] = field(default_factory=list)
    include_all: bool = False
    limit: int | None = None
    offset: int = 0

    def uids(self, keyword: str) -> list[str] | None:
        """The UIDs a UID matching key lists (None if the key is not given or universal)."""
        tag = Tag(keyword)
        for item in self.filters:
            if item.tag == tag and item.value:
                return _uid_list(item.value)
        return None

    def select(self, candidates: Iterable[Dataset]) -> list[Dataset]:
        """The candidates matching every key, paged by ``offset`` and ``limit``."""
        matching = [ds for ds in candidates if all(f.matches(ds) for f in self.filters)]
        end = None if self.limit is None else self.offset + self.limit
        return matching[self.offset : end]


def parse_query(items: Iterable[tuple[str, str]]) -> Query:
    """Parse query string items (name, value), in order.

    Raises:
        QueryError: for an unknown attribute, a bad ``limit``/``offset`` or ``includefield``.
    """
    filters: list[Filter] = []
    include: list[BaseTag] = []
    include_all, limit, offset = False, None, 0
    for name, value in items:
        if name == "limit":
            limit = _count(name, value, least=1)
        elif name == "offset":
            offset = _count(name, value, least=0)
        elif name == "includefield":
            for item in filter(None, (v.strip() for v in value.split(","))):
                if item == INCLUDE_ALL:
                    include_all = True
                else:
                    include.append(attribute_tag(item))
        elif name not in CONTROL_PARAMETERS:
            filters.append(Filter(attribute_tag(name), value))
    return Query(filters, include, include_all, limit, offset)


def attribute_tag(name: str) -> BaseTag:
    """The tag of a keyword (``PatientID``) or of eight hex digits (``00100020``).

    Raises:
        QueryError: if it names no attribute of the data dictionary.
    """
    if _HEX_TAG.match(name):
        return Tag(int(name, 16))
    tag = tag_for_keyword(name)
    if tag is None:
        raise QueryError(f"unknown attribute {name[:64]!r}")
    return Tag(tag)


def _matches(vr: str, actual: str, wanted: str) -> bool:
    if vr == "UI":
        return actual in _uid_list(wanted)
    if vr in _RANGE_VRS and "-" in wanted:
        low, _, high = wanted.partition("-")
        return (not low or actual >= low) and (not high or actual[: len(high)] <= high)
    if vr == "PN":
        actual, wanted = actual.lower(), wanted.lower()
    if "*" in wanted or "?" in wanted:
        pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in wanted)
        return re.fullmatch(pattern, actual, re.DOTALL) is not None
    return actual == wanted


def _uid_list(value: str) -> list[str]:
    return [uid.strip() for uid in re.split(r"[,\\]", value) if uid.strip()]


def _count(name: str, value: str, *, least: int) -> int:
    if not value.isdigit() or int(value) < least:
        raise QueryError(f"{name} must be a whole number of at least {least}")
    return int(value)
