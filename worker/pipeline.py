"""One study through the model into encoded results; no Celery, no database.

Given the spool files of a study (by series role) and a predictor, :func:`analyse_study` reads the
volumes, runs the predictor once, maps its output onto the result builders' inputs (this is the
one place that mapping lives) and encodes the SEG, the TID 1500 SR and the ORU^R01. For a study
out of intended use, :func:`report_not_analysed` encodes the SR that says why (and, if asked, the
ORU^R01 that tells the RIS), without a model.
Identities and dates come from the :class:`~pacs_node.results.inputs.ResultContext`, so running a
job again yields byte-identical objects.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pydicom
from hl7apy.core import Message
from pydicom import Dataset

from models.labels import LabelScheme, load_label_scheme
from models.volume import INPUT_ROLES, REFERENCE_ROLE, VolumeInput
from pacs_node.domain import Channel, ResultKind
from pacs_node.results.comparison import PriorReport, compare
from pacs_node.results.hl7 import build_not_analysed_oru, build_oru
from pacs_node.results.inputs import (
    AlgorithmInfo,
    LevelConfidence,
    LevelFinding,
    LevelMeasurement,
    LevelRegion,
    RegionShape,
    ResultContext,
    StudyQuality,
)
from pacs_node.results.key_images import build_key_images
from pacs_node.results.seg import build_seg
from pacs_node.results.source import ordered_series
from pacs_node.results.sr import build_not_analysed_sr, build_sr
from pacs_node.results.summary import ordered_levels
from worker.io import LoadedSeries, read_series

MEASUREMENT_NAMES = {"disc_height_mm": ("disc_height", "mm", 1)}
"""Model measurement key -> (result measurement name, UCUM unit, decimals reported)."""
PROBABILITY_DECIMALS = 4
"""Decimals of the probabilities reported (the calls are made on the unrounded values)."""
CONFIDENCE_DECIMALS = 3
"""Decimals of the level confidences reported."""


class QualityVerdict(Protocol):
    """What the pipeline reads from ``models.quality.QualityCheck``."""

    @property
    def needs_review(self) -> bool:
        """Whether the results must be read as "low confidence: review"."""

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why (short, fixed, patient-free texts); empty when no review is needed."""


class Prediction(Protocol):
    """What the pipeline reads from ``models.inference.StudyPrediction``."""

    label_map: np.ndarray
    level_probabilities: dict[str, dict[str, float]]
    level_calls: dict[str, dict[str, bool]]
    measurements: dict[str, dict[str, float]]
    level_confidence: dict[str, float]
    model_name: str
    model_version: str
    config_hash: str
    checkpoint_sha256: str

    @property
    def quality(self) -> QualityVerdict:
        """The model's study-level quality check."""


class Predictor(Protocol):
    """``models.inference.Predictor`` or a test double with the same interface."""

    def predict(self, volumes: Mapping[str, Any]) -> Prediction:
        """Analyse one study given its volumes by role."""


@dataclass(frozen=True)
class EncodedResult:
    """One encoded output object with its identity.

    Attributes:
        kind: What the object is.
        data: The encoded bytes (DICOM Part 10 file, or ER7 for HL7).
        sop_class_uid: SOP Class UID of a DICOM object.
        series_instance_uid: Series Instance UID of a DICOM object.
        sop_instance_uid: SOP Instance UID of a DICOM object.
        control_id: MSH-10 of an HL7 message.
    """

    kind: ResultKind
    data: bytes
    sop_class_uid: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    control_id: str | None = None

    @property
    def channel(self) -> Channel:
        """How the object is delivered."""
        return self.kind.channel


@dataclass(frozen=True)
class ResultBundle:
    """Everything a job produced, the model that produced it and its quality check (None when no
    model ran), and how long each stage took (seconds)."""

    results: tuple[EncodedResult, ...]
    algorithm: AlgorithmInfo | None
    quality: StudyQuality | None
    timings: dict[str, float] = field(default_factory=dict)


def load_volumes(series_files: Mapping[str, Sequence[Path]]) -> dict[str, LoadedSeries]:
    """Read the series the model uses.

    Raises:
        ValueError: if there is no SAG_T2 series, or a series does not form one volume.
        OSError: if a file cannot be read.
    """
    if not series_files.get(REFERENCE_ROLE):
        raise ValueError(f"the study has no {REFERENCE_ROLE} series")
    return {role: read_series(series_files[role]) for role in INPUT_ROLES if series_files.get(role)}


def findings_of(prediction: Prediction) -> list[LevelFinding]:
    """Per-level abnormality findings, from the model's probabilities and calls.

    Raises:
        ValueError: if a level or abnormality is not in the label scheme.
        KeyError: if a probability has no matching call.
    """
    return [
        LevelFinding(
            level,
            key,
            round(float(p), PROBABILITY_DECIMALS),
            bool(prediction.level_calls[level][key]),
        )
        for level, scores in prediction.level_probabilities.items()
        for key, p in scores.items()
    ]


def measurements_of(prediction: Prediction) -> list[LevelMeasurement]:
    """Per-level measurements the result builders can code, to the precision the model has (a
    disc height to 0.1 mm, not to 15 digits); unknown keys are skipped.

    Raises:
        ValueError: if a level is not in the label scheme or a value is not finite.
    """
    measurements = []
    for level, values in prediction.measurements.items():
        for key, value in values.items():
            if key in MEASUREMENT_NAMES:
                name, unit, decimals = MEASUREMENT_NAMES[key]
                measurements.append(
                    LevelMeasurement(level, name, round(float(value), decimals), unit)
                )
    return measurements


def confidences_of(prediction: Prediction) -> list[LevelConfidence]:
    """The model's confidence in each level it scored, to :data:`CONFIDENCE_DECIMALS`.

    Raises:
        ValueError: if the levels are not those of the probabilities, a level is not in the label
            scheme, or a confidence is outside [0, 1].
    """
    if set(prediction.level_confidence) != set(prediction.level_probabilities):
        raise ValueError("the level confidences are not of the levels scored")
    return [
        LevelConfidence(level, round(float(confidence), CONFIDENCE_DECIMALS))
        for level, confidence in prediction.level_confidence.items()
    ]


def quality_of(prediction: Prediction) -> StudyQuality:
    """The model's study-level quality check.

    Raises:
        ValueError: if it gives reasons without asking for review (or the reverse), or a reason
            is empty, longer than 200 characters or not one printable line.
    """
    quality = prediction.quality
    return StudyQuality(bool(quality.needs_review), tuple(str(r) for r in quality.reasons))


def algorithm_of(prediction: Prediction) -> AlgorithmInfo:
    """The model's identity as written into SEG and SR.

    Raises:
        ValueError: if the model name or version is empty.
    """
    return AlgorithmInfo(
        name=prediction.model_name,
        version=prediction.model_version,
        checkpoint_sha256=prediction.checkpoint_sha256,
        config_hash=prediction.config_hash,
    )


def _region(
    level: str, image: Dataset, shape: RegionShape, points: Sequence[tuple[float, float]]
) -> LevelRegion:
    return LevelRegion(
        level=level,
        sop_instance_uid=str(image.SOPInstanceUID),
        sop_class_uid=str(image.SOPClassUID),
        points=tuple((round(float(c), 2), round(float(r), 2)) for c, r in points),
        graphic_type=shape,
    )


def _outline(mask: np.ndarray) -> list[tuple[float, float]]:
    """The closed rectangle around a 2D mask, in (column, row) image coordinates, first corner
    repeated last: the region viewers list as a rectangle measurement (OHIF hydrates a closed
    POLYLINE of 4 or 5 points as its rectangle tool; other outlines it draws but cannot list)."""
    rows, cols = np.nonzero(mask)
    left, right = float(cols.min()), float(cols.max() + 1)
    top, bottom = float(rows.min()), float(rows.max() + 1)
    return [(left, top), (right, top), (right, bottom), (left, bottom), (left, top)]


def _centroid(mask: np.ndarray) -> np.ndarray:
    """Centre of a 2D mask's pixels, (column, row) image coordinates."""
    rows, cols = np.nonzero(mask)
    return np.array([cols.mean() + 0.5, rows.mean() + 0.5])


def _disc_region(level: str, images: list[Dataset], labels: np.ndarray) -> LevelRegion | None:
    """The rectangle around the disc on the slice where it is largest (the first such slice
    along the normal), or None where it is not segmented."""
    areas = labels.sum(axis=(1, 2))
    if not areas.any():
        return None
    index = int(np.argmax(areas))
    return _region(level, images[index], RegionShape.POLYLINE, _outline(labels[index]))


def _between_region(
    level: str, images: list[Dataset], above: np.ndarray, below: np.ndarray
) -> LevelRegion | None:
    """The midpoint of the two vertebrae around a disc that is not segmented, on the slice where
    both show most, or None where no slice shows both."""
    both = np.minimum(above.sum(axis=(1, 2)), below.sum(axis=(1, 2)))
    if not both.any():
        return None
    index = int(np.argmax(both))
    centre = (_centroid(above[index]) + _centroid(below[index])) / 2
    return _region(level, images[index], RegionShape.POINT, [(centre[0], centre[1])])


def level_regions(
    source_images: Sequence[Dataset],
    label_map: np.ndarray,
    levels: Sequence[str],
    scheme: LabelScheme,
) -> list[LevelRegion]:
    """Where each disc level lies on the reference series, from the predicted label map.

    A segmented disc gives the rectangle around it on the slice where it is largest; a disc that
    is not segmented gives the midpoint of its two vertebrae where both are; a level with neither
    gets no region (the SR then reports it apart from the located ones).

    Raises:
        ValueError: if the label map does not fit the series (see
            :func:`~pacs_node.results.source.ordered_series`) or a level is not a disc of
            ``scheme``.
    """
    images, labels = ordered_series(source_images, label_map)
    discs = [d.name for d in scheme.discs]
    vertebrae = [v.value for v in scheme.vertebrae]
    regions = []
    for level in levels:
        index = discs.index(level)
        region = _disc_region(level, images, labels == scheme.by_name(level).value)
        if region is None:
            above, below = vertebrae[index], vertebrae[index + 1]
            region = _between_region(level, images, labels == above, labels == below)
        if region is not None:
            regions.append(region)
    return regions


def _encode(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _dicom_result(kind: ResultKind, dataset: Dataset) -> EncodedResult:
    return EncodedResult(
        kind=kind,
        data=_encode(dataset),
        sop_class_uid=str(dataset.SOPClassUID),
        series_instance_uid=str(dataset.SeriesInstanceUID),
        sop_instance_uid=str(dataset.SOPInstanceUID),
    )


def encode_results(
    reference: LoadedSeries,
    prediction: Prediction,
    context: ResultContext,
    *,
    key_images: bool = False,
    prior: PriorReport | None = None,
) -> tuple[EncodedResult, ...]:
    """Build and encode the SEG, SR and ORU^R01 of one prediction (and key images if asked).

    The SEG and key images are left out when the model found no structure; the SR and ORU need
    at least one finding or measurement. Both carry the model's confidence per level and its
    quality check. With the report of the patient's ``prior`` study, the SR and ORU also say what
    changed since.

    Raises:
        ValueError: if the prediction does not fit the reference series, its confidences or
            quality check are invalid, or there is nothing to report.
    """
    algorithm = algorithm_of(prediction)
    context = context.for_model(algorithm)
    findings, measurements = findings_of(prediction), measurements_of(prediction)
    confidences, quality = confidences_of(prediction), quality_of(prediction)
    scheme = load_label_scheme()
    values = {s.name: s.value for s in scheme.structures}
    images = list(reference.datasets)
    label_map = np.asarray(prediction.label_map)
    results: list[EncodedResult] = []
    seg = None
    if np.isin(label_map, list(values.values())).any():
        seg = build_seg(images, label_map, values, algorithm=algorithm, context=context)
        results.append(_dicom_result(ResultKind.SEG, seg))
        if key_images:
            results.extend(
                _dicom_result(ResultKind.KEY_IMAGE, ds)
                for ds in build_key_images(images, label_map, values, context=context)
            )
    comparison = None if prior is None else compare(findings, measurements, prior)
    levels = ordered_levels([f.level for f in findings] + [m.level for m in measurements])
    sr = build_sr(
        images,
        findings,
        measurements,
        algorithm=algorithm,
        context=context,
        segmentation=seg,
        regions=level_regions(images, label_map, levels, scheme),
        comparison=comparison,
        confidences=confidences,
        quality=quality,
    )
    results.append(_dicom_result(ResultKind.SR, sr))
    oru = build_oru(
        images[0],
        findings,
        measurements,
        context=context,
        comparison=comparison,
        confidences=confidences,
        quality=quality,
    )
    results.append(_oru_result(oru))
    return tuple(results)


def _oru_result(message: Message) -> EncodedResult:
    return EncodedResult(
        kind=ResultKind.ORU,
        data=message.to_er7().encode(),
        control_id=str(message.msh.msh_10.value),
    )


def analyse_study(
    series_files: Mapping[str, Sequence[Path]],
    predictor: Predictor,
    context: ResultContext,
    *,
    key_images: bool = False,
    prior: PriorReport | None = None,
) -> ResultBundle:
    """Read a study's volumes, run the predictor once, and encode its results.

    Args:
        series_files: Spool files of each series, by role (``SAG_T2`` required).
        predictor: The loaded model (kept loaded by the caller across studies).
        context: The job's identity, dates and series numbers.
        key_images: Also render Secondary Capture key images (for destinations without SEG).
        prior: The node's report of the patient's prior study, to compare with.

    Returns:
        The encoded results with the model identity, its quality check and the stage timings
        (``load``, ``inference``, ``encode``).

    Raises:
        ValueError: if the study lacks a usable SAG_T2 series or the results cannot be encoded.
        OSError: if a spool file cannot be read.
        Exception: whatever the predictor raises (a study that crashes the model).
    """
    started = time.perf_counter()
    loaded = load_volumes(series_files)
    volumes: dict[str, VolumeInput] = {role: series.volume for role, series in loaded.items()}
    loaded_at = time.perf_counter()
    prediction = predictor.predict(volumes)
    predicted_at = time.perf_counter()
    results = encode_results(
        loaded[REFERENCE_ROLE], prediction, context, key_images=key_images, prior=prior
    )
    encoded_at = time.perf_counter()
    return ResultBundle(
        results=results,
        algorithm=algorithm_of(prediction),
        quality=quality_of(prediction),
        timings={
            "load": loaded_at - started,
            "inference": predicted_at - loaded_at,
            "encode": encoded_at - predicted_at,
        },
    )


def report_not_analysed(
    instance_files: Sequence[Path], reason: str, context: ResultContext, *, notify: bool = False
) -> ResultBundle:
    """Encode the report of a study the node does not analyse; no model runs.

    Args:
        instance_files: Received instances of the study; the header of the first is read (its
            patient and study attributes go into the report).
        reason: Why the study is out of intended use.
        context: The job's identity and dates.
        notify: Also encode the not-analysed ORU^R01 for the RIS.

    Returns:
        The not-analysed SR (PS3.3 A.35.13 Comprehensive 3D SR, TID 1500), then the ORU^R01 if
        asked, with their ``encode`` timing.

    Raises:
        ValueError: if there is no instance or ``reason`` is empty.
        OSError: if the instance cannot be read.
        pydicom.errors.InvalidDicomError: if the instance is not DICOM.
    """
    if not instance_files:
        raise ValueError("the study has no instance")
    started = time.perf_counter()
    header = pydicom.dcmread(instance_files[0], stop_before_pixels=True)
    results = [_dicom_result(ResultKind.SR, build_not_analysed_sr(header, reason, context=context))]
    if notify:
        results.append(_oru_result(build_not_analysed_oru(header, reason, context=context)))
    return ResultBundle(
        results=tuple(results),
        algorithm=None,
        quality=None,
        timings={"encode": time.perf_counter() - started},
    )
