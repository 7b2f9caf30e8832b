"""Small synthetic MR studies built with pydicom, for tests of the DICOM edge.

Header-true (geometry, acquisition tags, UIDs) with small noise images: the edge does not look
at pixel content. Tests of anatomy use the phantom generator instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

PREFIX = "1.2.826.0.1.3680043.10.1439."

SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

PROTOCOL = {
    "T1 TSE SAG": {"orientation": SAGITTAL, "tr": 550.0, "te": 10.0},
    "T2 TSE SAG": {"orientation": SAGITTAL, "tr": 3500.0, "te": 100.0},
    "STIR SAG": {"orientation": SAGITTAL, "tr": 4000.0, "te": 60.0, "ti": 150.0, "seq": "IR"},
    "T2 TSE AX": {"orientation": AXIAL, "tr": 4000.0, "te": 100.0},
}


@dataclass
class StudySpec:
    """What to generate; UIDs derive from ``seed`` so a spec always gives the same study."""

    seed: int = 0
    series: tuple[str, ...] = ("T1 TSE SAG", "T2 TSE SAG")
    slices: int = 3
    size: int = 32
    modality: str = "MR"
    body_part: str = "LSPINE"
    patient_id: str = "PHANTOM-001"
    study_uid: str = field(default="")

    def __post_init__(self) -> None:
        if not self.study_uid:
            self.study_uid = generate_uid(PREFIX, [f"study-{self.seed}"])


def make_study(spec: StudySpec) -> list[Dataset]:
    """All instances of a study, series after series."""
    return [ds for name in spec.series for ds in make_series(spec, name)]


def make_series(spec: StudySpec, description: str) -> Iterator[Dataset]:
    """The instances of one series of ``spec``."""
    params = PROTOCOL.get(description, {"orientation": SAGITTAL, "tr": 500.0, "te": 10.0})
    series_uid = generate_uid(PREFIX, [f"series-{spec.seed}-{description}"])
    rng = np.random.default_rng(spec.seed)
    for index in range(spec.slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        sop_uid = generate_uid(PREFIX, [f"sop-{spec.seed}-{description}-{index}"])
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = spec.study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = generate_uid(PREFIX, [f"for-{spec.seed}"])
        ds.PatientID = spec.patient_id
        ds.PatientName = "Phantom^Lumbar"
        ds.AccessionNumber = f"ACC{spec.seed:05d}"
        ds.StudyDescription = "MRI LUMBAR SPINE"
        ds.Modality = spec.modality
        ds.BodyPartExamined = spec.body_part
        ds.SeriesDescription = description
        ds.SeriesNumber = list(PROTOCOL).index(description) + 1 if description in PROTOCOL else 99
        ds.InstanceNumber = index + 1
        ds.ImageOrientationPatient = list(params["orientation"])
        ds.ImagePositionPatient = [float(index * 4.0 - 8.0), -100.0, 100.0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 4.0
        ds.RepetitionTime = params["tr"]
        ds.EchoTime = params["te"]
        if "ti" in params:
            ds.InversionTime = params["ti"]
        ds.ScanningSequence = params.get("seq", "SE")
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = spec.size
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.PixelData = rng.integers(0, 4096, (spec.size, spec.size), dtype=np.uint16).tobytes()
        yield ds


def write_study(spec: StudySpec, folder: Path) -> list[Path]:
    """Write a study as DICOM files (one per instance) and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in make_study(spec):
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
