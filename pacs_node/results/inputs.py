"""Plain inputs of the result builders.

The worker pipeline maps the model's output onto these types; nothing here knows about the model.
Level names are disc names from the label scheme (``"L4/L5"``); abnormality keys are
``disc_bulge``, ``disc_protrusion``, ``disc_extrusion``, ``schmorl_node`` and
``vertebral_degeneration``. Each type checks its values on construction and raises
``ValueError`` for anything a builder could not encode.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from dataclasses import dataclass, field
from enum import StrEnum

from pacs_node.hl7.addressing import Hl7Addressing
from pacs_node.results.codes import (
    ABNORMALITY_CODES,
    DISC_CODES,
    MEASUREMENT_CODES,
    STRUCTURE_CODES,
)
from pacs_node.results.identity import DEFAULT_UID_PREFIX
from pacs_node.validation import validate_uid

AI_LABEL = "AI generated - not for clinical use"
"""Written into every result until the node is cleared for clinical use."""


class ResultStatus(StrEnum):
    """Status of a result: drives the SR Preliminary Flag and HL7 OBR-25/OBX-11."""

    PRELIMINARY = "preliminary"
    FINAL = "final"
    CORRECTED = "corrected"

    @property
    def hl7_code(self) -> str:
        """HL7 table 0085/0123 code: ``P``, ``F`` or ``C``."""
        return {"preliminary": "P", "final": "F", "corrected": "C"}[self.value]


class SegmentationType(StrEnum):
    """Encoding of a DICOM SEG: one bit plane per segment, or one label map (Sup 243)."""

    BINARY = "binary"
    LABELMAP = "labelmap"


class KeyImageMode(StrEnum):
    """Which slices become key images for a destination whose viewer cannot show SEG."""

    MIDLINE = "midline"
    """One image: the slice that holds most of the segmented spine."""
    PER_LEVEL = "per_level"
    """One image per disc level found: the slice that holds most of that disc."""


@dataclass(frozen=True)
class AlgorithmInfo:
    """Identity of the model that produced the results (written into SEG and SR)."""

    name: str
    version: str
    checkpoint_sha256: str
    config_hash: str

    def __post_init__(self) -> None:
        if not self.name or not self.version:
            raise ValueError("algorithm name and version must not be empty")

    @property
    def key(self) -> str:
        """What identifies the model in result identities: name, version, weights, config."""
        return f"{self.name}@{self.version}#{self.checkpoint_sha256}:{self.config_hash}"

    def parameters(self) -> dict[str, str]:
        """Algorithm parameters for the Algorithm Identification Sequence."""
        return {"checkpoint_sha256": self.checkpoint_sha256, "config_hash": self.config_hash}


@dataclass(frozen=True)
class LevelFinding:
    """One abnormality scored at one disc level."""

    level: str
    abnormality: str
    probability: float
    present: bool

    def __post_init__(self) -> None:
        if self.level not in DISC_CODES:
            raise ValueError(f"unknown disc level {self.level!r}")
        if self.abnormality not in ABNORMALITY_CODES:
            raise ValueError(f"unknown abnormality {self.abnormality!r}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability {self.probability} is outside [0, 1]")


@dataclass(frozen=True)
class LevelConfidence:
    """How sure the model is of one disc level's results, in [0, 1]."""

    level: str
    confidence: float

    def __post_init__(self) -> None:
        if self.level not in DISC_CODES:
            raise ValueError(f"unknown disc level {self.level!r}")
        if not 0.0 <= self.confidence <= 1.0:  # also false for NaN
            raise ValueError(f"confidence {self.confidence} at {self.level} is outside [0, 1]")


REVIEW_REASON_MAX_CHARS = 200
"""Longest reason for review a result carries."""


@dataclass(frozen=True)
class StudyQuality:
    """The model's study-level quality check: whether its results must be read as "low
    confidence: review", and why (short, fixed, patient-free texts, one line each)."""

    needs_review: bool
    reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.needs_review != bool(self.reasons):
            raise ValueError("a quality check gives reasons exactly when it asks for review")
        for reason in self.reasons:
            if not reason.strip() or not reason.isprintable():
                raise ValueError("a reason for review is a non-empty line of printable text")
            if len(reason) > REVIEW_REASON_MAX_CHARS:
                raise ValueError(f"a reason for review is {REVIEW_REASON_MAX_CHARS} chars at most")


@dataclass(frozen=True)
class LevelMeasurement:
    """One measurement at one disc level.

    ``structure`` is what was measured (defaults to the level's disc), e.g. ``"canal"`` for
    ``canal_diameter``. ``unit`` must be the UCUM unit :data:`MEASUREMENT_CODES` lists for ``name``.
    """

    level: str
    name: str
    value: float
    unit: str
    structure: str | None = None

    def __post_init__(self) -> None:
        if self.level not in DISC_CODES:
            raise ValueError(f"unknown disc level {self.level!r}")
        if self.name not in MEASUREMENT_CODES:
            raise ValueError(f"unknown measurement {self.name!r}")
        expected = MEASUREMENT_CODES[self.name][1].value
        if self.unit != expected:
            raise ValueError(f"{self.name} must be in {expected!r}, not {self.unit!r}")
        if not math.isfinite(self.value):
            raise ValueError(f"{self.name} at {self.level} is not finite")
        if self.structure is not None and self.structure not in STRUCTURE_CODES:
            raise ValueError(f"unknown structure {self.structure!r}")

    @property
    def site(self) -> str:
        """The structure measured."""
        return self.structure or self.level


class RegionShape(StrEnum):
    """Graphic type of a level's image region (PS3.3 C.18.6.1.1)."""

    POINT = "POINT"
    """The level's centre, where its disc is not segmented."""
    POLYLINE = "POLYLINE"
    """The disc's outline, closed (first point repeated last)."""


@dataclass(frozen=True)
class LevelRegion:
    """Where a disc level lies on the analysed series: a point or closed outline on one image.

    ``points`` are (column, row) image coordinates of that instance, PS3.3 C.18.6.1.2: (0, 0) is
    the top left corner of the top left pixel, so the centre of pixel (row r, column c) is
    (c + 0.5, r + 0.5).
    """

    level: str
    sop_instance_uid: str
    sop_class_uid: str
    points: tuple[tuple[float, float], ...]
    graphic_type: RegionShape

    def __post_init__(self) -> None:
        if self.level not in DISC_CODES:
            raise ValueError(f"unknown disc level {self.level!r}")
        validate_uid(self.sop_instance_uid, "SOP Instance UID of a region")
        validate_uid(self.sop_class_uid, "SOP Class UID of a region")
        shape = RegionShape(self.graphic_type)
        if any(len(p) != 2 or not all(math.isfinite(v) and v >= 0 for v in p) for p in self.points):
            raise ValueError(f"region of {self.level}: points must be finite (column, row) >= 0")
        if shape is RegionShape.POINT and len(self.points) != 1:
            raise ValueError(f"region of {self.level}: a POINT has exactly one point")
        if shape is RegionShape.POLYLINE and (
            len(set(self.points)) < 3 or self.points[0] != self.points[-1]
        ):
            raise ValueError(f"region of {self.level}: an outline is closed, of 3 points or more")


@dataclass(frozen=True)
class ResultContext:
    """What every builder needs to know about the job, besides the model output.

    ``job_key`` is what every UID and control ID derives from
    (:func:`~pacs_node.results.identity.job_result_key`; :meth:`for_model` adds the model).
    ``created`` is stamped into every content and instance creation date/time, so rebuilding the
    results of a job (a retry or a replay) yields identical objects. Series numbers are the ones the
    node's output series get in the study. The institution, UID root and HL7 addressing are the
    site's.
    """

    job_key: str
    created: datetime.datetime
    software_version: str
    status: ResultStatus = ResultStatus.PRELIMINARY
    manufacturer: str = "pacs-node"
    model_name: str = "pacs-node lumbar spine AI"
    device_serial_number: str = "pacs-node"
    institution_name: str | None = None
    uid_prefix: str = DEFAULT_UID_PREFIX
    seg_series_number: int = 900
    sr_series_number: int = 901
    key_image_series_number: int = 902
    hl7: Hl7Addressing = field(default_factory=Hl7Addressing)

    def __post_init__(self) -> None:
        if not self.job_key:
            raise ValueError("job_key must not be empty")
        if min(self.seg_series_number, self.sr_series_number, self.key_image_series_number) < 1:
            raise ValueError("series numbers must be positive")

    def for_model(self, algorithm: AlgorithmInfo) -> ResultContext:
        """This context with the model in its job key: results of another model (or other
        weights) for the same job version get other identities."""
        return dataclasses.replace(self, job_key=f"{self.job_key}/{algorithm.key}")
