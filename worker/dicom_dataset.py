"""DICOM datasets for training and evaluation: generic DICOM + DICOM SEG folders, RSNA 2024.

``models`` may not import DICOM code, so the readers live here and hand ``models`` plain
:class:`~models.data.samples.StudySample` objects.

- A generic folder holds any number of studies as DICOM files (any layout). Series are grouped by
  SeriesInstanceUID; each DICOM SEG is mapped onto the series it references, and its segments are
  matched to the label scheme by SegmentLabel (structure name, e.g. ``L4/L5``, or its prompt).
  Structures without a segment are marked unannotated (partial labels).
- RSNA studies (``models.data.rsna``) are read from their series folders, unlabelled, with a
  report built from the grades (for contrastive training).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from models.data.rsna import RsnaStudy
from models.data.samples import StudySample
from models.labels import LabelScheme
from models.volume import VolumeInput
from worker.io import series_from_datasets as stack_series
from worker.io import slice_normal

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
POSITION_TOLERANCE_MM = 0.5


@dataclass(frozen=True)
class SeriesVolume:
    """One image series sorted along its slice normal, with what pairing a T1 to a T2 needs."""

    series_uid: str
    study_uid: str
    echo_time: float
    volume: VolumeInput

    @property
    def normal(self) -> np.ndarray:
        """The unit slice normal."""
        return slice_normal(self.volume.orientation)

    @property
    def is_sagittal(self) -> bool:
        """True when the slice normal points left-right."""
        return bool(abs(self.normal[0]) > 0.8)


def series_volume(datasets: list[Dataset]) -> SeriesVolume:
    """Stack single-frame images of one series along the slice normal (as the node does).

    Raises:
        ValueError: if the images do not form one volume.
    """
    loaded = stack_series(datasets)
    first = loaded.datasets[0]
    return SeriesVolume(
        series_uid=str(first.SeriesInstanceUID),
        study_uid=str(first.StudyInstanceUID),
        echo_time=float(first.get("EchoTime", 0.0) or 0.0),
        volume=loaded.volume,
    )


def read_series_folder(directory: Path) -> SeriesVolume:
    """Read every DICOM file of one series folder (RSNA layout: one series per folder).

    Raises:
        FileNotFoundError: if the folder holds no DICOM file.
        ValueError: if the images are inconsistent.
    """
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() == ".dcm")
    if not files:
        raise FileNotFoundError(f"no DICOM files in {directory}")
    return series_volume([pydicom.dcmread(p) for p in files])


def seg_to_labels(
    seg: Dataset, reference: SeriesVolume, scheme: LabelScheme
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Rasterise a DICOM SEG onto its reference series' grid.

    Returns:
        (labels (slices, rows, cols) uint8, label values annotated by the SEG).

    Raises:
        ValueError: if a frame does not match any reference slice.
    """
    names = {s.name.lower(): s.value for s in scheme.structures}
    names.update({s.prompt.lower(): s.value for s in scheme.structures})
    segment_values = {
        int(item.SegmentNumber): names.get(str(item.SegmentLabel).lower())
        for item in seg.SegmentSequence
    }
    frames = seg.pixel_array.reshape(-1, int(seg.Rows), int(seg.Columns))
    if seg.SegmentationType == "FRACTIONAL":
        frames = frames > int(seg.MaximumFractionalValue) / 2
    labels = np.zeros(reference.volume.pixels.shape, dtype=np.uint8)
    normal, positions = reference.normal, reference.volume.slice_positions_mm
    for index, group in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        value = segment_values.get(number)
        if value is None:
            continue
        position = float(np.dot(group.PlanePositionSequence[0].ImagePositionPatient, normal))
        slot = int(np.argmin(np.abs(positions - position)))
        if abs(positions[slot] - position) > POSITION_TOLERANCE_MM:
            raise ValueError("SEG frame does not match a reference slice")
        labels[slot][frames[index].astype(bool)] = value
    annotated = tuple(sorted(v for v in segment_values.values() if v is not None))
    return labels, annotated


def load_dicom_folder(root: Path, scheme: LabelScheme) -> list[StudySample]:
    """Every study under ``root`` with a sagittal series a SEG refers to, as samples.

    The SEG's reference series is the T2 (reference); a sagittal series of the same study with a
    shorter echo time and the same grid is taken as T1.

    Raises:
        OSError: if a file cannot be read.
        ValueError: on inconsistent series or SEG frames.
    """
    images: dict[str, list[Dataset]] = defaultdict(list)
    segs: list[Dataset] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError:
            continue
        if str(ds.SOPClassUID) == SEG_SOP_CLASS:
            segs.append(ds)
        elif "PixelData" in ds:
            images[str(ds.SeriesInstanceUID)].append(ds)
    series = {uid: series_volume(items) for uid, items in images.items()}
    samples = []
    for seg in segs:
        referenced = str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)
        reference = series.get(referenced)
        if reference is None or not reference.is_sagittal:
            continue
        labels, annotated = seg_to_labels(seg, reference, scheme)
        t1 = _matching_t1(reference, series.values())
        samples.append(
            _study_sample(
                reference.study_uid,
                reference.volume,
                None if t1 is None else t1.volume,
                labels=labels,
                annotated=annotated,
            )
        )
    return samples


def load_rsna_study(study: RsnaStudy) -> StudySample:
    """An RSNA study as an unlabelled sample with a grade-derived report.

    Raises:
        FileNotFoundError: if the study has no sagittal T2/STIR series folder.
    """
    if "SAG_T2" not in study.series:
        raise FileNotFoundError(f"RSNA study {study.study_id} has no Sagittal T2/STIR series")
    t2 = read_series_folder(study.series["SAG_T2"]).volume
    t1 = read_series_folder(study.series["SAG_T1"]).volume if "SAG_T1" in study.series else None
    return _study_sample(
        f"rsna-{study.study_id}", t2, t1, labels=None, annotated=(), report=study.report()
    )


def _study_sample(
    study_id: str,
    t2: VolumeInput,
    t1: VolumeInput | None,
    *,
    labels: np.ndarray | None,
    annotated: tuple[int, ...],
    report: str | None = None,
) -> StudySample:
    """A sample on the T2's grid; a T1 on another grid is left out."""
    return StudySample(
        study_id=study_id,
        t2=t2.pixels,
        t1=t1.pixels if t1 is not None and t1.pixels.shape == t2.pixels.shape else None,
        labels=labels,
        annotated=annotated,
        pixel_spacing=t2.pixel_spacing,
        slice_positions_mm=t2.slice_positions_mm,
        orientation=t2.orientation,
        report=report,
    )


def _matching_t1(
    reference: SeriesVolume, candidates: Iterable[SeriesVolume]
) -> SeriesVolume | None:
    for other in candidates:
        if (
            other.series_uid != reference.series_uid
            and other.study_uid == reference.study_uid
            and other.is_sagittal
            and other.volume.pixels.shape == reference.volume.pixels.shape
            and other.echo_time < reference.echo_time
        ):
            return other
    return None
