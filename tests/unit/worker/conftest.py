"""Fixtures for the worker tests: a small phantom study, a spool holding it, a fake predictor."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import Comprehensive3DSRStorage

from models.labels import load_label_scheme
from pacs_node.results import codes
from worker.commands.phantom import write_phantom
from worker.phantom import WrittenStudy


@pytest.fixture(scope="session")
def phantom_study(tmp_path_factory: pytest.TempPathFactory) -> WrittenStudy:
    """A small synthetic lumbar study written as DICOM (read-only: copy before changing)."""
    return write_phantom(3, tmp_path_factory.mktemp("phantom") / "study", size="small")


def series_files(study: WrittenStudy) -> dict[str, list[Path]]:
    """Files of each series by role."""
    return {s.role: list(s.paths) for s in study.series}


def assert_not_analysed_sr(data: bytes, source: Dataset, reason: str) -> None:
    """``data`` is a Comprehensive 3D SR of the source's patient and study that says it was not
    analysed, and why."""
    sr = pydicom.dcmread(io.BytesIO(data))
    assert sr.SOPClassUID == Comprehensive3DSRStorage
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "AccessionNumber"):
        assert sr[keyword].value == source[keyword].value, keyword
    (group,) = hd.sr.MeasurementReport.from_sequence([sr]).get_image_measurement_groups()
    (evaluation,) = group.get_qualitative_evaluations()
    assert (evaluation.name, evaluation.value) == (codes.ANALYSIS_STATUS, codes.NOT_ANALYSED)
    texts = {
        item.ConceptNameCodeSequence[0].CodeMeaning: item.TextValue
        for container in sr.ContentSequence
        for item in container.get("ContentSequence", [])
        if item.ValueType == "TEXT"
    }
    assert texts[codes.NOT_ANALYSED_REASON.meaning] == reason
    assert texts["Summary"].startswith(f"Not analysed: {reason}.")


@dataclass(frozen=True)
class FakeQuality:
    """The fields of ``models.quality.QualityCheck`` the pipeline reads."""

    needs_review: bool = False
    reasons: tuple[str, ...] = ()


REVIEW = FakeQuality(True, ("only 3 of 5 lumbar discs found", "sacrum not in view"))
"""A study check that asks for review."""


@dataclass
class FakePrediction:
    """The fields of ``models.inference.StudyPrediction`` the pipeline reads."""

    label_map: np.ndarray
    level_probabilities: dict[str, dict[str, float]]
    level_calls: dict[str, dict[str, bool]]
    measurements: dict[str, dict[str, float]]
    level_confidence: dict[str, float] = field(default_factory=dict)
    quality: FakeQuality = FakeQuality()
    model_name: str = "fake-model"
    model_version: str = "1"
    config_hash: str = "c" * 16
    checkpoint_sha256: str = "0" * 64


@dataclass
class FakePredictor:
    """A predictor double: labels the truth label map of the SAG_T2 series, or raises; its study
    check passes unless given another ``quality``."""

    error: Exception | None = None
    calls: list[Mapping[str, Any]] = field(default_factory=list)
    during: Callable[[], None] | None = None
    checkpoint_sha256: str = "0" * 64
    quality: FakeQuality = FakeQuality()

    def predict(self, volumes: Mapping[str, Any]) -> FakePrediction:
        self.calls.append(volumes)
        if self.during is not None:
            self.during()
        if self.error is not None:
            raise self.error
        shape = volumes["SAG_T2"].pixels.shape
        values = {s.name: s.value for s in load_label_scheme().structures}
        labels = np.zeros(shape, dtype=np.uint8)
        labels[:, 10:20, 30:60] = values["L4"]
        labels[:, 20:24, 30:60] = values["L4/L5"]
        labels[:, 24:34, 30:60] = values["L5"]
        keys = ("disc_bulge", "disc_protrusion")
        return FakePrediction(
            label_map=labels,
            level_probabilities={"L4/L5": {"disc_bulge": 0.8, "disc_protrusion": 0.1}},
            level_calls={"L4/L5": {k: k == keys[0] for k in keys}},
            measurements={"L4/L5": {"disc_height_mm": 4.0, "unknown_key": 1.0}},
            level_confidence={"L4/L5": 0.87654},
            quality=self.quality,
            checkpoint_sha256=self.checkpoint_sha256,
        )


class RecordingQueue:
    """A work queue that records what it was asked to wake."""

    def __init__(self) -> None:
        self.analyse: list[int] = []
        self.deliver: list[int] = []

    def enqueue(self, job_id: int) -> None:
        self.analyse.append(job_id)

    def enqueue_delivery(self, job_id: int) -> None:
        self.deliver.append(job_id)
