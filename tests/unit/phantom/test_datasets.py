"""build_series_datasets and write_study on a hand-made study (no generator involved)."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import MRImageStorage

from models.labels import load_label_scheme
from models.phantom import PhantomSeries, PhantomStudy
from worker.phantom import (
    PatientInfo,
    build_series_datasets,
    load_label_volume,
    read_truth,
    study_uids,
    write_study,
)


def make_study(seed: int = 42) -> PhantomStudy:
    rng = np.random.default_rng(seed)
    slices, rows, cols = 3, 16, 20
    positions = np.array([[-4.0 + 4.4 * k, -80.0, 120.0] for k in range(slices)])
    sag = PhantomSeries(
        role="SAG_T2",
        pixels=rng.integers(0, 4096, (slices, rows, cols), dtype=np.uint16),
        labels=rng.integers(0, 21, (slices, rows, cols), dtype=np.uint8),
        abnormality_masks={"disc_bulge": rng.random((slices, rows, cols)) < 0.1},
        image_positions=positions,
        image_orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
        pixel_spacing=(0.8, 0.75),
        slice_thickness=4.0,
        acquisition={
            "RepetitionTime": 3500.0,
            "EchoTime": 100.0,
            "EchoTrainLength": 17.0,
            "FlipAngle": 90.0,
            "MagneticFieldStrength": 1.5,
            "ScanningSequence": "SE",
            "SequenceVariant": "SK\\SP",
            "ScanOptions": "",
            "MRAcquisitionType": "2D",
            "InPlanePhaseEncodingDirection": "COL",
            "SpacingBetweenSlices": 4.4,
        },
        description="T2 TSE SAG",
    )
    stir = PhantomSeries(
        role="SAG_STIR",
        pixels=rng.integers(0, 4096, (slices, rows, cols), dtype=np.uint16),
        labels=None,
        abnormality_masks={},
        image_positions=positions,
        image_orientation=sag.image_orientation,
        pixel_spacing=sag.pixel_spacing,
        slice_thickness=4.0,
        acquisition={
            **sag.acquisition,
            "InversionTime": 160.0,
            "ScanningSequence": "SE\\IR",
            "SequenceVariant": "SK\\SP\\MP",
        },
        description="STIR SAG",
    )
    return PhantomStudy(
        seed=seed,
        series=[sag, stir],
        findings={"L4/L5": {"disc_bulge": True}},
        measurements={"L4/L5": 9.5},
        report="FINDINGS:\nL4/L5: Broad-based disc bulge.\n",
        visible_structures=["L4", "L4/L5", "L5"],
        centres={"L4": (0.0, -60.0, 40.0)},
    )


def roundtrip(ds: pydicom.Dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def test_datasets_round_trip_pixels_and_geometry() -> None:
    study = make_study()
    series = study.series[0]
    datasets = build_series_datasets(study, 0)
    assert len(datasets) == series.pixels.shape[0]
    for k, ds in enumerate(datasets):
        back = roundtrip(ds)
        assert back.SOPClassUID == MRImageStorage
        assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
        assert back.InstanceNumber == k + 1
        np.testing.assert_array_equal(back.pixel_array, series.pixels[k])
        np.testing.assert_allclose(
            [float(v) for v in back.ImagePositionPatient], series.image_positions[k], atol=1e-5
        )
        assert [float(v) for v in back.ImageOrientationPatient] == list(series.image_orientation)
        assert [float(v) for v in back.PixelSpacing] == list(series.pixel_spacing)
        assert float(back.SliceThickness) == 4.0
        assert float(back.RepetitionTime) == 3500.0 and float(back.EchoTime) == 100.0
        assert back.BodyPartExamined == "LSPINE" and back.Modality == "MR"
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)


def test_series_of_a_study_share_study_and_frame_of_reference() -> None:
    study = make_study()
    a, b = build_series_datasets(study, 0)[0], build_series_datasets(study, 1)[0]
    assert a.StudyInstanceUID == b.StudyInstanceUID
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID
    assert a.SeriesInstanceUID != b.SeriesInstanceUID
    assert (a.SeriesNumber, b.SeriesNumber) == (1, 2)
    assert list(b.ScanningSequence) == ["SE", "IR"] and float(b.InversionTime) == 160.0


def test_uids_are_deterministic_and_keyed() -> None:
    study = make_study()
    first = [ds.SOPInstanceUID for ds in build_series_datasets(study, 0)]
    again = [ds.SOPInstanceUID for ds in build_series_datasets(make_study(), 0)]
    assert first == again
    assert study_uids(study, uid_key="small").study != study_uids(study).study
    prefixed = build_series_datasets(study, 0, uid_prefix="1.2.3.")[0]
    assert prefixed.SOPInstanceUID.startswith("1.2.3.")
    with pytest.raises(ValueError, match="prefix"):
        study_uids(study, uid_prefix="1.2.x.")


def test_patient_from_seed_is_stable_and_plausible() -> None:
    p = PatientInfo.from_seed(9)
    assert p == PatientInfo.from_seed(9) and p != PatientInfo.from_seed(10)
    assert 25 <= int(p.age[:3]) <= 80 and p.sex in ("M", "F")
    ds = build_series_datasets(make_study(9), 0)[0]
    assert ds.PatientID == p.patient_id and ds.PatientAge == p.age


def test_bad_series_is_rejected() -> None:
    study = make_study()
    study.series[0].pixels = study.series[0].pixels.astype(np.int32)
    with pytest.raises(ValueError, match="uint16"):
        build_series_datasets(study, 0)


def test_write_study_files_and_truth(tmp_path: Path) -> None:
    study = make_study()
    written = write_study(study, tmp_path / "s")
    truth = read_truth(written.directory)
    assert truth["study_instance_uid"] == written.study_instance_uid
    assert truth["findings"] == study.findings and truth["report"] == study.report
    names = {str(s.value): s.name for s in load_label_scheme().structures}
    assert truth["label_names"] == names and names["3"] == "L4"
    for entry, ws in zip(truth["series"], written.series, strict=True):
        assert entry["series_instance_uid"] == ws.series_instance_uid
        files = [written.directory / f for f in entry["files"]]
        assert files == list(ws.paths)
        numbers = [pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber for f in files]
        assert numbers == list(range(1, len(files) + 1))
    labels, masks = load_label_volume(written.directory, "SAG_T2")
    np.testing.assert_array_equal(labels, study.series[0].labels)
    np.testing.assert_array_equal(
        masks["disc_bulge"], study.series[0].abnormality_masks["disc_bulge"]
    )
    with pytest.raises(KeyError):
        load_label_volume(written.directory, "SAG_STIR")
    # A rerun writes the same DICOM bytes.
    again = write_study(make_study(), tmp_path / "t")
    for a, b in zip(written.series, again.series, strict=True):
        assert [p.read_bytes() for p in a.paths] == [p.read_bytes() for p in b.paths]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
def test_dciodvfy_reports_no_errors(tmp_path: Path) -> None:
    written = write_study(make_study(), tmp_path)
    for ws in written.series:
        result = subprocess.run(
            ["dciodvfy", str(ws.paths[0])], capture_output=True, text=True, check=False
        )
        errors = [ln for ln in (result.stdout + result.stderr).splitlines() if "Error" in ln]
        assert not errors, errors
