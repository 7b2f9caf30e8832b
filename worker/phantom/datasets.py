"""Build MR Image Storage datasets (PS3.3 A.4) for a synthetic study, in memory.

Each slice becomes one instance with the Patient, General Study, Patient Study, General Series,
Frame of Reference, General Equipment, General Acquisition, General Image, Image Plane, Image
Pixel, MR Image, VOI LUT and SOP Common modules. All series of a study share one Frame of
Reference (the patient did not move between them). UIDs are derived from the study seed with
``pydicom.uid.generate_uid(prefix, entropy_srcs=...)``, so a rerun writes identical objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    PYDICOM_ROOT_UID,
    UID,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from models.phantom import PhantomSeries, PhantomStudy
from worker.phantom.types import PatientInfo

MANUFACTURER = "pacs-node"
MODEL_NAME = "lumbar spine MRI phantom"
STUDY_DESCRIPTION = "MRI LUMBAR SPINE WO CONTRAST"
BITS_STORED = 12
# Acquisition keywords copied into each instance as they are (values from PhantomSeries).
_NUMERIC = (
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "EchoTrainLength",
    "FlipAngle",
    "MagneticFieldStrength",
    "ImagingFrequency",
    "NumberOfAverages",
    "PixelBandwidth",
    "SpacingBetweenSlices",
)
_TEXT = ("SequenceName", "MRAcquisitionType", "InPlanePhaseEncodingDirection")
_MULTI = ("ScanningSequence", "SequenceVariant", "ScanOptions")


@dataclass(frozen=True)
class StudyUIDs:
    """The deterministic UIDs of a study."""

    study: str
    frame_of_reference: str
    prefix: str
    key: str

    def series(self, index: int, role: str) -> UID:
        """SeriesInstanceUID of the series at ``index`` with ``role``."""
        return generate_uid(self.prefix, entropy_srcs=[self.key, "series", str(index), role])

    def instance(self, index: int, role: str, slice_index: int) -> UID:
        """SOPInstanceUID of one slice."""
        return generate_uid(
            self.prefix, entropy_srcs=[self.key, "sop", str(index), role, str(slice_index)]
        )


def study_uids(study: PhantomStudy, uid_key: str = "", uid_prefix: str | None = None) -> StudyUIDs:
    """UIDs for ``study``, from its seed and ``uid_key`` (extra entropy, e.g. the size preset, so
    studies generated from one seed with different settings do not share UIDs).

    Raises:
        ValueError: if ``uid_prefix`` is not a valid UID prefix (digits and dots, ending in a dot,
            at most 54 characters).
    """
    prefix = uid_prefix or PYDICOM_ROOT_UID
    if not prefix.endswith(".") or len(prefix) > 54 or not prefix.replace(".", "").isdigit():
        raise ValueError(f"invalid UID prefix {prefix!r}")
    key = f"pacs-node-phantom|{study.seed}|{uid_key}"
    return StudyUIDs(
        study=generate_uid(prefix, entropy_srcs=[key, "study"]),
        frame_of_reference=generate_uid(prefix, entropy_srcs=[key, "frame-of-reference"]),
        prefix=prefix,
        key=key,
    )


def build_series_datasets(
    study: PhantomStudy,
    index: int,
    *,
    uid_key: str = "",
    patient: PatientInfo | None = None,
    uid_prefix: str | None = None,
) -> list[Dataset]:
    """The instances of ``study.series[index]`` as datasets, in slice order.

    Args:
        study: The study.
        index: Which series (its position in ``study.series``; SeriesNumber is ``index + 1``).
        uid_key: Extra entropy for its UIDs (see :func:`study_uids`).
        patient: Patient and study time; derived from the seed when None.
        uid_prefix: Root for generated UIDs; pydicom's root when None.

    Returns:
        One dataset per slice (InstanceNumber = slice index + 1), each with file meta.

    Raises:
        IndexError: if there is no series at ``index``.
        ValueError: if the series' arrays disagree in shape or type, or the prefix is invalid.
    """
    series = study.series[index]
    _check(series)
    who = patient or PatientInfo.from_seed(study.seed)
    uids = study_uids(study, uid_key, uid_prefix)
    series_uid = uids.series(index, series.role)
    base = _series_base(study, series, index, who, uids, series_uid)
    row = np.array(series.image_orientation[:3], dtype=np.float64)
    col = np.array(series.image_orientation[3:], dtype=np.float64)
    normal = np.cross(row, col)
    center, width = _window(series.pixels)
    out = []
    for k in range(series.pixels.shape[0]):
        ds = Dataset()
        ds.update(base)
        sop_uid = uids.instance(index, series.role, k)
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        ipp = series.image_positions[k]
        ds.ImagePositionPatient = [_ds(v) for v in ipp]
        ds.SliceLocation = _ds(float(ipp @ normal))
        ds.WindowCenter = center
        ds.WindowWidth = width
        ds.PixelData = np.ascontiguousarray(series.pixels[k], dtype="<u2").tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = "PACSNODE_PH1"
        ds.file_meta = meta
        out.append(ds)
    return out


def _check(series: PhantomSeries) -> None:
    pixels = series.pixels
    if pixels.ndim != 3 or pixels.dtype != np.uint16:
        raise ValueError("pixels must be a (slices, rows, cols) uint16 array")
    if series.image_positions.shape != (pixels.shape[0], 3):
        raise ValueError("image_positions must have one (x, y, z) per slice")
    if len(series.image_orientation) != 6:
        raise ValueError("image_orientation must have six values")
    if int(pixels.max(initial=0)) >= 2**BITS_STORED:
        raise ValueError(f"pixel values must fit in {BITS_STORED} bits")


def _ds(value: float) -> str:
    """A DS string of at most 16 characters."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if len(text) <= 16 else f"{value:.8g}"


def _window(pixels: np.ndarray) -> tuple[str, str]:
    low, high = np.percentile(pixels[:, ::4, ::4], [1.0, 99.5])
    return _ds(round((low + high) / 2.0)), _ds(round(max(high - low, 1.0)))


def _series_base(
    study: PhantomStudy,
    series: PhantomSeries,
    index: int,
    who: PatientInfo,
    uids: StudyUIDs,
    series_uid: str,
) -> Dataset:
    """Attributes shared by every instance of a series."""
    when = who.study_datetime
    acq_time = (when.hour * 3600 + when.minute * 60 + when.second + 240 * (index + 1)) % 86400
    acq_hms = f"{acq_time // 3600:02d}{acq_time // 60 % 60:02d}{acq_time % 60:02d}"
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    is_localizer = series.role == "LOCALIZER"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER" if is_localizer else "OTHER"]
    ds.SOPClassUID = MRImageStorage
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = time
    # Patient and Patient Study
    ds.PatientName = who.patient_name
    ds.PatientID = who.patient_id
    ds.PatientBirthDate = who.birth_date.strftime("%Y%m%d")
    ds.PatientSex = who.sex
    ds.PatientAge = who.age
    ds.PatientWeight = _ds(who.weight_kg)
    ds.PatientSize = _ds(who.height_m)
    ds.PatientIdentityRemoved = "NO"
    # General Study
    ds.StudyInstanceUID = uids.study
    ds.StudyDate = date
    ds.StudyTime = time
    ds.ReferringPhysicianName = ""
    ds.StudyID = f"{study.seed % 10**8}"
    ds.AccessionNumber = f"PHA{study.seed:09d}"[:16]
    ds.StudyDescription = STUDY_DESCRIPTION
    # General Series
    ds.Modality = "MR"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = index + 1
    ds.SeriesDescription = series.description
    ds.ProtocolName = f"LSPINE {series.description}"
    ds.SeriesDate = date
    ds.SeriesTime = acq_hms
    ds.BodyPartExamined = "LSPINE"
    ds.PatientPosition = "HFS"
    # Frame of Reference
    ds.FrameOfReferenceUID = uids.frame_of_reference
    ds.PositionReferenceIndicator = ""
    # General Equipment
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = MODEL_NAME
    ds.InstitutionName = "Synthetic data, not for clinical use"
    ds.StationName = "PHANTOM"
    ds.SoftwareVersions = "1"
    # General Acquisition and General Image
    ds.AcquisitionNumber = 1
    ds.AcquisitionDate = date
    ds.AcquisitionTime = acq_hms
    ds.ContentDate = date
    ds.ContentTime = acq_hms
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    # Image Plane
    ds.PixelSpacing = [_ds(v) for v in series.pixel_spacing]
    ds.ImageOrientationPatient = [_ds(v) for v in series.image_orientation]
    ds.SliceThickness = _ds(series.slice_thickness)
    # Image Pixel
    rows, cols = series.pixels.shape[1:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = BITS_STORED
    ds.HighBit = BITS_STORED - 1
    ds.PixelRepresentation = 0
    # MR Image
    acq = series.acquisition
    for keyword in _MULTI:
        value = str(acq.get(keyword, ""))
        setattr(ds, keyword, value.split("\\") if value else "")
    for keyword in _TEXT:
        if keyword in acq:
            setattr(ds, keyword, str(acq[keyword]))
    for keyword in _NUMERIC:
        if keyword in acq:
            setattr(ds, keyword, _ds(float(acq[keyword])))
    if "EchoTrainLength" in acq:
        ds.EchoTrainLength = int(float(acq["EchoTrainLength"]))
    ds.EchoNumbers = "1"
    ds.ImagedNucleus = "1H"
    ds.AngioFlag = "N"
    ds.ReceiveCoilName = "Spine"
    ds.TransmitCoilName = "Body"
    # (frequency rows, frequency columns, phase rows, phase columns), acquired at 80 % resolution.
    freq, phase = int(cols * 0.8), int(rows * 0.8)
    by_row = str(acq.get("InPlanePhaseEncodingDirection", "ROW")) == "ROW"
    ds.AcquisitionMatrix = [freq, 0, 0, phase] if by_row else [0, freq, phase, 0]
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "100"
    ds.VariableFlipAngleFlag = "N"
    ds.WindowCenterWidthExplanation = "PHANTOM"
    return ds
