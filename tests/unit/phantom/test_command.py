"""The phantom command end to end: generator -> DICOM -> read back; geometry and validity."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from models.labels import load_label_scheme
from worker.commands.phantom import main
from worker.phantom import load_label_volume, read_truth

SCHEME = load_label_scheme()


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantom")
    assert main(["--out", str(out), "--seed", "21", "--size", "small", "--preview"]) == 0
    return out / "study_000021"


def read_series(study_dir: Path, entry: dict) -> list[pydicom.Dataset]:  # type: ignore[type-arg]
    return [pydicom.dcmread(study_dir / f) for f in entry["files"]]


def test_files_are_valid_dicom_in_slice_order(study_dir: Path) -> None:
    truth = read_truth(study_dir)
    roles = [s["role"] for s in truth["series"]]
    assert {"SAG_T1", "SAG_T2", "SAG_STIR", "AX_T2"} <= set(roles)
    for entry in truth["series"]:
        datasets = read_series(study_dir, entry)
        assert [ds.InstanceNumber for ds in datasets] == list(range(1, len(datasets) + 1))
        assert [ds.SOPInstanceUID for ds in datasets] == entry["sop_instance_uids"]
        assert {ds.StudyInstanceUID for ds in datasets} == {truth["study_instance_uid"]}
        assert {ds.SeriesDescription for ds in datasets} == {entry["description"]}
        assert all(ds.pixel_array.shape == (ds.Rows, ds.Columns) for ds in datasets)


def test_mask_voxels_map_to_structure_centres_through_dicom(study_dir: Path) -> None:
    """A voxel labelled L3 maps through IPP/IOP/PixelSpacing to L3's centre in patient space."""
    truth = read_truth(study_dir)
    entry = next(s for s in truth["series"] if s["role"] == "SAG_T2")
    datasets = read_series(study_dir, entry)
    labels, _ = load_label_volume(study_dir, "SAG_T2")
    assert labels.shape == (len(datasets), datasets[0].Rows, datasets[0].Columns)
    ipp = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    iop = [float(v) for v in datasets[0].ImageOrientationPatient]
    row_dir, col_dir = np.array(iop[:3]), np.array(iop[3:])
    dr, dc = (float(v) for v in datasets[0].PixelSpacing)
    normal = np.cross(row_dir, col_dir)
    checked = 0
    for name, centre in truth["centres"].items():
        centre = np.array(centre)
        # Patient -> voxel: nearest slice, then the in-plane index.
        k = int(np.argmin(np.abs((ipp - centre) @ normal)))
        i = round(float((centre - ipp[k]) @ col_dir) / dr)
        j = round(float((centre - ipp[k]) @ row_dir) / dc)
        if not (0 <= i < labels.shape[1] and 0 <= j < labels.shape[2]):
            continue
        assert labels[k, i, j] == SCHEME.by_name(name).value, name
        # Voxel -> patient: the labelled voxel lies within a voxel of the centre.
        back = ipp[k] + j * dc * row_dir + i * dr * col_dir
        in_plane = (back - centre) - ((back - centre) @ normal) * normal
        assert np.linalg.norm(in_plane) <= max(dr, dc)
        checked += 1
    assert checked >= 10
    assert "L3" in truth["centres"]


def test_axial_stack_crosses_the_lower_discs(study_dir: Path) -> None:
    labels, _ = load_label_volume(study_dir, "AX_T2")
    present = set(np.unique(labels).tolist())
    for name in ("L4/L5", "L4", "canal"):
        assert SCHEME.by_name(name).value in present


def test_preview_is_written(study_dir: Path) -> None:
    with Image.open(study_dir / "preview.png") as image:
        assert image.mode == "RGB" and image.width == 3 * image.height


def test_rerun_writes_identical_dicom(study_dir: Path, tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path), "--seed", "21", "--size", "small"]) == 0
    truth = read_truth(study_dir)
    for entry in truth["series"]:
        for f in entry["files"]:
            assert (tmp_path / "study_000021" / f).read_bytes() == (study_dir / f).read_bytes()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path), "--studies", "0"]) == 2


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
def test_every_file_passes_dciodvfy(study_dir: Path) -> None:
    truth = read_truth(study_dir)
    for entry in truth["series"]:
        for f in entry["files"]:
            result = subprocess.run(
                ["dciodvfy", str(study_dir / f)], capture_output=True, text=True, check=False
            )
            errors = [ln for ln in (result.stdout + result.stderr).splitlines() if "Error" in ln]
            assert not errors, (f, errors)
