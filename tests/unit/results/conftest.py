"""Synthetic MR study for the result builder tests: two sagittal series, shuffled instances.

Geometry is a real sagittal acquisition: rows run anterior->posterior, columns head->feet, slices
step along the patient's left-right axis. The label map places the lumbar vertebrae and discs as
blocks stacked cranio-caudally (T9 and T10 are absent, the canal is present), so tests know where
every structure is.
"""

from __future__ import annotations

import datetime
import io
import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom.config
import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from pacs_node.results.inputs import AlgorithmInfo, ResultContext

ROWS, COLS = 64, 48
SPACING = 0.8
STUDY_UID = generate_uid(entropy_srcs=["results-test-study"])

# name -> value, as in the project's label scheme (MRSpineSeg values, canal 20).
STRUCTURE_VALUES = {
    "S": 1,
    "L5": 2,
    "L4": 3,
    "L3": 4,
    "L2": 5,
    "L1": 6,
    "T12": 7,
    "T11": 8,
    "T10": 9,
    "T9": 10,
    "L5/S1": 11,
    "L4/L5": 12,
    "L3/L4": 13,
    "L2/L3": 14,
    "L1/L2": 15,
    "T12/L1": 16,
    "T11/T12": 17,
    "T10/T11": 18,
    "T9/T10": 19,
    "canal": 20,
}
# Cranio-caudal stack present in the phantom: (name, height in rows).
_STACK = (
    ("T11/T12", 2),
    ("T11", 4),
    ("T12/L1", 2),
    ("T12", 4),
    ("L1/L2", 2),
    ("L1", 4),
    ("L2/L3", 2),
    ("L2", 4),
    ("L3/L4", 2),
    ("L3", 4),
    ("L4/L5", 2),
    ("L4", 4),
    ("L5/S1", 2),
    ("L5", 4),
    ("S", 6),
)
PRESENT = {name for name, _ in _STACK} | {"canal"}


@dataclass
class Series:
    """One series: instances in arrival (shuffled) order and the label map in the same order."""

    images: list[Dataset]
    label_map: np.ndarray
    sorted_label_map: np.ndarray  # slices ordered by position along the slice normal


def phantom_labels(n_slices: int, rows: int = ROWS, cols: int = COLS) -> np.ndarray:
    """Label map of the phantom spine, slices ordered by ascending position along the normal."""
    labels = np.zeros((n_slices, rows, cols), dtype=np.uint8)
    lo, hi = max(0, n_slices // 2 - 2), min(n_slices, n_slices // 2 + 3)
    row = 8  # rows run head -> feet
    for name, height in _STACK:
        labels[lo:hi, row : row + height, 12:28] = STRUCTURE_VALUES[name]
        row += height
    labels[max(0, n_slices // 2 - 1) : n_slices // 2 + 2, 8:row, 30:36] = STRUCTURE_VALUES["canal"]
    return labels


def _mr_image(
    series_uid: str, frame_of_reference: str, index: int, n_slices: int, number: int, desc: str
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    sop_uid = generate_uid(entropy_srcs=[series_uid, str(index)])
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "MR"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PAT-001"
    ds.IssuerOfPatientID = "HOSP"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = STUDY_UID
    ds.StudyDate = "20260301"
    ds.StudyTime = "101500"
    ds.StudyID = "S1"
    ds.AccessionNumber = "ACC-42"
    ds.ReferringPhysicianName = "Who^Doctor"
    ds.StudyDescription = "MRI LUMBAR SPINE"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.SeriesDescription = desc
    ds.InstanceNumber = index + 1
    ds.FrameOfReferenceUID = frame_of_reference
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "ACME"
    ds.BodyPartExamined = "LSPINE"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    # Things that must never leak into results.
    ds.ImageComments = "SECRET clinical note"
    ds.OperatorsName = "Tech^Operator"
    ds.add_new(0x00091010, "LO", "private vendor data")
    # Sagittal: rows anterior->posterior (+y), columns head->feet (-z), slices along -x.
    ds.ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
    x = 8.0 - 4.0 * index  # index 0 is the patient's leftmost slice
    ds.ImagePositionPatient = [x, -25.0, 30.0]
    ds.SliceThickness = 4.0
    ds.SpacingBetweenSlices = 4.0
    ds.PixelSpacing = [SPACING, SPACING]
    ds.Rows, ds.Columns = ROWS, COLS
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.EchoTime = 100.0
    ds.RepetitionTime = 3000.0
    ds.EchoTrainLength = 16
    rng = np.random.default_rng(index)
    pixels = (rng.random((ROWS, COLS)) * 400 + 100 * index).astype(np.uint16)
    ds.PixelData = pixels.tobytes()
    return ds


def make_series(n_slices: int, *, seed: int, number: int, desc: str, same_for: bool) -> Series:
    """A sagittal series of ``n_slices`` with its phantom label map, in shuffled order."""
    series_uid = generate_uid(entropy_srcs=["series", str(seed)])
    frame_of_reference = generate_uid(
        entropy_srcs=["for", "study" if same_for else str(seed)],
    )
    images = [
        _mr_image(series_uid, frame_of_reference, i, n_slices, number, desc)
        for i in range(n_slices)
    ]
    # index i sits at x = 8 - 4i; the normal is -x, so ascending position == ascending index.
    sorted_labels = phantom_labels(n_slices)
    order = list(range(n_slices))
    random.Random(seed).shuffle(order)
    return Series(
        images=[images[i] for i in order],
        label_map=sorted_labels[order],
        sorted_label_map=sorted_labels,
    )


@pytest.fixture(autouse=True)
def strict_pydicom(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make pydicom raise on invalid values when writing or reading (not just warn)."""
    monkeypatch.setattr(pydicom.config.settings, "writing_validation_mode", pydicom.config.RAISE)
    monkeypatch.setattr(pydicom.config.settings, "reading_validation_mode", pydicom.config.RAISE)


@pytest.fixture(scope="session")
def t2_series() -> Series:
    """Seven-slice sagittal T2, shuffled."""
    return make_series(7, seed=1, number=3, desc="T2 SAG", same_for=True)


@pytest.fixture(scope="session")
def t1_series() -> Series:
    """Five-slice sagittal T1 of the same study, its own frame of reference, shuffled."""
    return make_series(5, seed=2, number=2, desc="T1 SAG", same_for=False)


@pytest.fixture
def algorithm() -> AlgorithmInfo:
    """The model's identity."""
    return AlgorithmInfo(
        name="LumbarCLIP-seg", version="0.1.0", checkpoint_sha256="ab" * 32, config_hash="cfg123"
    )


@pytest.fixture
def context() -> ResultContext:
    """A job's result context."""
    return ResultContext(
        job_key="job-0001/v1",
        created=datetime.datetime(2026, 3, 1, 10, 30, 15),
        software_version="0.1.0",
        institution_name="General Hospital",
    )


def _dciodvfy_errors(path: Path) -> list[str]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture
def dciodvfy() -> Callable[[Path], list[str]]:
    """Return a function giving dciodvfy's error lines for a file (dicom3tools)."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    return _dciodvfy_errors


def write_read(dataset: Dataset) -> Dataset:
    """Encode a dataset to bytes and read it back, as a receiving PACS would."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return dcmread(buffer)


@pytest.fixture
def roundtrip() -> Callable[[Dataset], Dataset]:
    """Return :func:`write_read` (test modules cannot import conftest under importlib mode)."""
    return write_read


@pytest.fixture
def structure_values() -> dict[str, int]:
    """The label scheme's structure name -> value map."""
    return dict(STRUCTURE_VALUES)


@pytest.fixture
def series_factory() -> Callable[..., Series]:
    """Return :func:`make_series`."""
    return make_series
