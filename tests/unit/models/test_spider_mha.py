"""MetaImage I/O and the SPIDER loader, on small files written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data.mha import MetaImage, read_mha, write_mha
from models.data.spider import list_spider_patients, load_spider_study
from models.labels import load_label_scheme


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_mha_round_trip(tmp_path: Path, compress: bool, dtype: type) -> None:
    array: np.ndarray = (np.arange(2 * 3 * 4) % 100).reshape(2, 3, 4).astype(dtype)
    image = MetaImage(array, (0.5, 0.7, 3.3), (1.0, -2.0, 3.5), (0, 1, 0, 1, 0, 0, 0, 0, 1))
    write_mha(image, tmp_path / "x.mha", compress=compress)
    back = read_mha(tmp_path / "x.mha")
    assert back.array.dtype == array.dtype and np.array_equal(back.array, array)
    assert back.spacing == (0.5, 0.7, 3.3) and back.origin == (1.0, -2.0, 3.5)
    assert back.direction == (0, 1, 0, 1, 0, 0, 0, 0, 1)


def test_mha_rejects_external_data(tmp_path: Path) -> None:
    path = tmp_path / "x.mhd"
    path.write_text(
        "NDims = 3\nDimSize = 1 1 1\nElementType = MET_UCHAR\nElementDataFile = x.raw\n"
    )
    with pytest.raises(ValueError):
        read_mha(path)


def write_spider(root: Path, patient: str, swap_numbering: bool = False) -> np.ndarray:
    """A 5-slice SPIDER-like study: x = slices (4 mm), y = anterior-posterior, z = up."""
    slices, rows, cols = 5, 40, 30
    mask = np.zeros((slices, rows, cols), dtype=np.uint16)  # rows increase head-wards (z)
    low, high = (2, 1) if swap_numbering else (1, 2)
    mask[1:4, 2:7, 5:20] = low  # most caudal vertebra
    mask[1:4, 7:9, 5:20] = 201
    mask[1:4, 9:14, 5:20] = high
    mask[1:4, 0:30, 22:25] = 100
    image = (mask * 3 + 10).astype(np.int16)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    geometry = {"spacing": (4.0, 0.8, 0.8), "origin": (0.0, 0.0, 0.0)}
    for name, array in (("images", image), ("masks", mask)):
        # numpy order (z, y, x) = (rows, cols, slices)
        meta = MetaImage(np.transpose(array, (1, 2, 0)).copy(), **geometry)
        write_mha(meta, root / name / f"{patient}_t2.mha")
    write_mha(
        MetaImage(np.transpose(image, (1, 2, 0)).copy(), **geometry),
        root / "images" / f"{patient}_t1.mha",
    )
    return mask


def test_spider_study_is_remapped(tmp_path: Path) -> None:
    write_spider(tmp_path, "7")
    (tmp_path / "overview").mkdir()
    (tmp_path / "overview" / "radiological_gradings.csv").write_text(
        "Patient,IVD label,Modic,UP endplate,LOW endplate,Spondylolisthesis,"
        "Disc herniation,Disc narrowing,Disc bulging,Pfirrman grade\n"
        "7,1,2,0,1,0,1,0,0,3\n"
    )
    scheme = load_label_scheme()
    assert list_spider_patients(tmp_path) == ["7"]
    study = load_spider_study(tmp_path, "7", scheme)
    assert study.t2.shape == (5, 40, 30) and study.t1 is not None
    assert study.pixel_spacing == (0.8, 0.8)
    assert np.allclose(np.diff(study.slice_positions_mm), 4.0)
    assert study.labels is not None
    assert (study.labels[2, 3, 10], study.labels[2, 8, 10], study.labels[2, 11, 10]) == (
        scheme.by_name("L5").value,
        scheme.by_name("L5/S1").value,
        scheme.by_name("L4").value,
    )
    assert study.labels[2, 20, 23] == scheme.by_name("canal").value
    assert study.annotated is not None and scheme.by_name("S").value not in study.annotated
    assert study.findings == {
        "L5/S1": {
            "disc_bulge": False,
            "disc_protrusion": True,
            "disc_extrusion": False,
            "schmorl_node": True,
            "vertebral_degeneration": True,
        }
    }


def test_spider_numbering_from_the_top_is_rejected(tmp_path: Path) -> None:
    write_spider(tmp_path, "3", swap_numbering=True)
    with pytest.raises(ValueError):
        load_spider_study(tmp_path, "3", load_label_scheme())
