"""Series classification and intended-use gating for the lumbar spine MRI protocol.

Rules are data (``data/selection_rules.toml``): a site changes them without code. A series'
attributes are the acquisition tags captured from its first instance (see
``series_attributes``); classification and gating work on those plain values.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import Dataset

from pacs_node.domain import SeriesRole
from pacs_node.errors import ConfigError

DEFAULT_RULES = Path(__file__).with_name("data") / "selection_rules.toml"

# Tags captured from the first instance of each series, by keyword.
CAPTURED_KEYWORDS = (
    "Modality",
    "SeriesDescription",
    "StudyDescription",
    "ProtocolName",
    "BodyPartExamined",
    "ImageOrientationPatient",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "ScanningSequence",
    "SequenceVariant",
    "ImageType",
    "MRAcquisitionType",
)


def series_attributes(ds: Dataset) -> dict[str, Any]:
    """The captured tags of an instance as JSON-friendly values (absent tags are left out)."""
    out: dict[str, Any] = {}
    for keyword in CAPTURED_KEYWORDS:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        if isinstance(value, str | int | float):
            out[keyword] = value if not isinstance(value, str) else str(value)
        else:
            try:
                out[keyword] = [_plain(v) for v in value]
            except TypeError:
                out[keyword] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, int | float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def plane_of(orientation: Sequence[float] | None) -> str | None:
    """ "sagittal", "axial" or "coronal" from ImageOrientationPatient; None if unknown."""
    if orientation is None or len(orientation) != 6:
        return None
    try:
        r = [float(v) for v in orientation[:3]]
        c = [float(v) for v in orientation[3:]]
    except (TypeError, ValueError):
        return None
    normal = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    axis = max(range(3), key=lambda i: abs(normal[i]))
    if abs(normal[axis]) < 0.5:
        return None
    return ("sagittal", "coronal", "axial")[axis]


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v).upper() for v in value]
    return [v.upper() for v in str(value).replace("\\", " ").split()]


def _in_range(value: Any, bounds: Sequence[float] | None) -> bool:
    if bounds is None:
        return True
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    return bounds[0] <= v <= bounds[1]


@dataclass(frozen=True)
class Rule:
    """One classification rule: all given conditions must hold."""

    role: SeriesRole
    orientation: str | None = None
    description_regex: re.Pattern[str] | None = None
    not_description_regex: re.Pattern[str] | None = None
    image_type_contains: str | None = None
    scanning_sequence_contains: str | None = None
    tr_ms: tuple[float, float] | None = None
    te_ms: tuple[float, float] | None = None
    ti_ms: tuple[float, float] | None = None

    def matches(self, attrs: Mapping[str, Any]) -> bool:
        """True if the series' attributes satisfy every condition."""
        texts = [str(attrs[k]) for k in ("SeriesDescription", "ProtocolName") if k in attrs]
        checks = (
            self.orientation is None
            or plane_of(attrs.get("ImageOrientationPatient")) == self.orientation,
            self.description_regex is None or any(self.description_regex.search(t) for t in texts),
            self.not_description_regex is None
            or not any(self.not_description_regex.search(t) for t in texts),
            self.image_type_contains is None
            or self.image_type_contains.upper() in _as_list(attrs.get("ImageType")),
            self.scanning_sequence_contains is None
            or self.scanning_sequence_contains.upper() in _as_list(attrs.get("ScanningSequence")),
            _in_range(attrs.get("RepetitionTime"), self.tr_ms) if self.tr_ms else True,
            _in_range(attrs.get("EchoTime"), self.te_ms) if self.te_ms else True,
            _in_range(attrs.get("InversionTime"), self.ti_ms) if self.ti_ms else True,
        )
        return all(checks)


@dataclass(frozen=True)
class Gating:
    """Intended use: which studies the model may analyse."""

    modalities: frozenset[str] = frozenset({"MR"})
    body_parts: frozenset[str] = frozenset()
    description_regex: re.Pattern[str] | None = None
    required_roles: tuple[SeriesRole, ...] = (SeriesRole.SAG_T2,)


@dataclass(frozen=True)
class SelectionRules:
    """Classification rules and gating, loaded from TOML."""

    rules: tuple[Rule, ...]
    gating: Gating = field(default_factory=Gating)

    def classify(self, attrs: Mapping[str, Any]) -> SeriesRole:
        """The role of a series: the first matching rule, else OTHER."""
        for rule in self.rules:
            if rule.matches(attrs):
                return rule.role
        return SeriesRole.OTHER

    def not_analysable_reason(
        self, series: Iterable[tuple[Mapping[str, Any], SeriesRole]]
    ) -> str | None:
        """Why a study is outside the intended use, or None if it may be analysed.

        ``series`` holds each series' attributes with its role.
        """
        items = list(series)
        if not items:
            return "no series received"
        modalities = {str(a.get("Modality", "")).upper() for a, _ in items}
        if not modalities & self.gating.modalities:
            return f"modality {', '.join(sorted(modalities)) or 'unknown'} is not MR"
        mr_items = [
            (a, r) for a, r in items if str(a.get("Modality", "")).upper() in self.gating.modalities
        ]
        body_parts = {
            str(a.get("BodyPartExamined", "")).upper().replace(" ", "") for a, _ in mr_items
        } - {""}
        if body_parts and not body_parts & self.gating.body_parts:
            return f"body part {', '.join(sorted(body_parts))} is not the lumbar spine"
        if not body_parts and self.gating.description_regex is not None:
            text = " ".join(
                str(a.get(k, ""))
                for a, _ in mr_items
                for k in ("StudyDescription", "SeriesDescription", "ProtocolName")
            )
            if not self.gating.description_regex.search(text):
                return "no body part given and no description names the lumbar spine"
        roles = {r for _, r in mr_items}
        missing = [r for r in self.gating.required_roles if r not in roles]
        if missing:
            return "no usable series: missing " + ", ".join(r.value for r in missing)
        return None


def _regex(value: str | None) -> re.Pattern[str] | None:
    return re.compile(value, re.IGNORECASE) if value else None


def _bounds(value: Sequence[float] | None) -> tuple[float, float] | None:
    if value is None:
        return None
    low, high = value
    return float(low), float(high)


def load_rules(path: Path | None = None) -> SelectionRules:
    """Load classification rules and gating from TOML (the built-in lumbar rules by default).

    Raises:
        ConfigError: if the file cannot be read or a rule is malformed.
    """
    path = path or DEFAULT_RULES
    try:
        raw = tomllib.loads(Path(path).read_text())
        rules = tuple(
            Rule(
                role=SeriesRole(r["role"]),
                orientation=r.get("orientation"),
                description_regex=_regex(r.get("description_regex")),
                not_description_regex=_regex(r.get("not_description_regex")),
                image_type_contains=r.get("image_type_contains"),
                scanning_sequence_contains=r.get("scanning_sequence_contains"),
                tr_ms=_bounds(r.get("tr_ms")),
                te_ms=_bounds(r.get("te_ms")),
                ti_ms=_bounds(r.get("ti_ms")),
            )
            for r in raw.get("rule", [])
        )
        g = raw.get("gating", {})
        gating = Gating(
            modalities=frozenset(m.upper() for m in g.get("modalities", ["MR"])),
            body_parts=frozenset(b.upper() for b in g.get("body_parts", [])),
            description_regex=_regex(g.get("description_regex")),
            required_roles=tuple(SeriesRole(r) for r in g.get("required_roles", ["SAG_T2"])),
        )
    except (OSError, tomllib.TOMLDecodeError, KeyError, ValueError, re.error) as exc:
        raise ConfigError(f"cannot load selection rules from {path}: {exc}") from exc
    return SelectionRules(rules=rules, gating=gating)


@dataclass(frozen=True)
class SeriesCandidate:
    """A classified series of a completed study, as a job may analyse it."""

    series_id: int
    role: SeriesRole
    instances: int


def choose_series(candidates: Iterable[SeriesCandidate]) -> dict[SeriesRole, int]:
    """For each role, the series to analyse: the one with the most instances (on a tie, the
    one received first, i.e. the lowest id)."""
    chosen: dict[SeriesRole, SeriesCandidate] = {}
    for candidate in sorted(candidates, key=lambda c: (-c.instances, c.series_id)):
        chosen.setdefault(candidate.role, candidate)
    return {role: candidate.series_id for role, candidate in chosen.items()}
