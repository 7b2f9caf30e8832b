"""The worker's DICOM dataset readers, on a small MR series + DICOM SEG written here."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from models.data.rsna import RsnaStudy
from models.labels import load_label_scheme
from worker.dicom_dataset import load_dicom_folder, load_rsna_study, read_series_folder

SAGITTAL = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]


def mr_series(
    folder: Path, study_uid: str, echo_time: float, shape: tuple[int, int, int], seed: int
) -> list[Dataset]:
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, frame_uid = generate_uid(), generate_uid()
    rng = np.random.default_rng(seed)
    datasets = []
    for index in reversed(range(shape[0])):  # written out of order on purpose
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        sop_uid = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, sop_uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^P", "P1", "", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20250101", "120000", "1", ""
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", 1, index + 1
        ds.SeriesDescription = "T2 SAG" if echo_time > 50 else "T1 SAG"
        ds.EchoTime, ds.Manufacturer = echo_time, "test"
        ds.ImageOrientationPatient = SAGITTAL
        ds.ImagePositionPatient = [index * 4.0 - 8.0, -50.0, 60.0]
        ds.PixelSpacing, ds.SliceThickness = [1.5, 1.5], 4.0
        ds.Rows, ds.Columns = shape[1], shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = rng.integers(0, 4000, shape[1:], dtype=np.uint16).tobytes()
        ds.save_as(folder / f"{index}.dcm", enforce_file_format=True)
        datasets.append(ds)
    return sorted(datasets, key=lambda d: d.ImagePositionPatient[0])


def write_study(root: Path) -> np.ndarray:
    study_uid = generate_uid()
    shape = (4, 24, 20)
    t2 = mr_series(root / "t2", study_uid, 90.0, shape, 0)
    mr_series(root / "t1", study_uid, 10.0, shape, 1)
    mask = np.zeros((*shape, 2), dtype=bool)
    mask[1:3, 5:9, 4:12, 0] = True  # segment 1 = L4/L5
    mask[1:3, 10:16, 4:12, 1] = True  # segment 2 = L5
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for number, label in ((1, "L4/L5"), (2, "L5"))
    ]
    seg = hd.seg.Segmentation(
        source_images=t2,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=100,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
    )
    seg.save_as(root / "seg.dcm")
    return mask


def test_generic_folder_with_seg(tmp_path: Path) -> None:
    mask = write_study(tmp_path)
    scheme = load_label_scheme()
    (sample,) = load_dicom_folder(tmp_path, scheme)
    assert sample.t2.shape == (4, 24, 20) and sample.t1 is not None
    assert np.all(np.diff(sample.slice_positions_mm) > 0)
    assert sample.labels is not None
    assert np.array_equal(sample.labels == scheme.by_name("L4/L5").value, mask[..., 0])
    assert np.array_equal(sample.labels == scheme.by_name("L5").value, mask[..., 1])
    assert sample.annotated == (scheme.by_name("L5").value, scheme.by_name("L4/L5").value)
    assert sample.pixel_spacing == (1.5, 1.5)


def test_rsna_study_reads_series_folders(tmp_path: Path) -> None:
    study_uid = generate_uid()
    mr_series(tmp_path / "12", study_uid, 90.0, (3, 16, 16), 0)
    series = read_series_folder(tmp_path / "12")
    assert series.volume.pixels.shape == (3, 16, 16) and series.is_sagittal
    study = RsnaStudy(
        "5", {"SAG_T2": tmp_path / "12"}, {("spinal_canal_stenosis", "L4/L5"): "Severe"}
    )
    sample = load_rsna_study(study)
    assert sample.labels is None and sample.report == "Severe spinal canal stenosis at L4/L5."
    with pytest.raises(FileNotFoundError):
        load_rsna_study(RsnaStudy("6"))
