"""SPIDER (Radboudumc, Zenodo 8009680) loader: ``images/`` and ``masks/`` of ``.mha`` files.

SPIDER mask values: vertebrae 1..25 numbered from the bottom (L5 = 1), 100 the spinal canal,
101..125 partially visible vertebrae, 201..225 discs from the bottom (L5/S1 = 201). The sacrum is
not segmented, so it is marked unannotated (partial-label training). Numbering is checked against
the vertebra centroids: label 1 must be the most caudal one, else the study is rejected.
Gradings (``radiological_gradings.csv``) map to findings: bulging -> disc_bulge, herniation ->
disc_protrusion (SPIDER does not grade protrusion vs extrusion), endplate change ->
schmorl_node, Modic > 0 -> vertebral_degeneration.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from models.data.mha import MetaImage, read_mha
from models.data.samples import StudySample
from models.labels import LabelScheme
from models.postprocess import superior_coordinate

_SPIDER_LEVELS = 9  # L5 (1) up to T9 (9) in the project's scheme


def spider_label_map(scheme: LabelScheme) -> dict[int, int]:
    """SPIDER mask value -> project label value (vertebrae, partial vertebrae, discs, canal).

    Raises:
        KeyError: if the scheme lacks a needed structure.
    """
    vertebrae = [s.value for s in reversed(scheme.vertebrae) if s.name != "S"]  # L5 .. T9
    discs = [s.value for s in reversed(scheme.discs)]  # L5/S1 .. T9/T10
    mapping = {}
    for k in range(1, _SPIDER_LEVELS + 1):
        mapping[k] = vertebrae[k - 1]
        mapping[100 + k] = vertebrae[k - 1]
        mapping[200 + k] = discs[k - 1]
    mapping[100] = scheme.by_name("canal").value
    return mapping


def to_sagittal(
    image: MetaImage,
) -> tuple[np.ndarray, tuple[float, float], np.ndarray, tuple[float, ...]]:
    """Reorder a MetaImage to (slices, rows, cols) with rows along the cranio-caudal axis.

    Returns:
        (array, (row spacing, col spacing), slice positions in mm, orientation cosines).

    Raises:
        ValueError: if the direction matrix is degenerate.
    """
    direction = np.asarray(image.direction, dtype=float).reshape(3, 3).T  # column i = axis i
    spacing = np.asarray(image.spacing, dtype=float)
    slice_axis = int(np.argmax(spacing))
    others = [a for a in range(3) if a != slice_axis]
    row_axis = max(others, key=lambda a: abs(direction[2, a]))
    col_axis = next(a for a in others if a != row_axis)
    if abs(direction[2, row_axis]) < 1e-3:
        raise ValueError("no in-plane axis points cranio-caudally")
    # numpy axis of MetaImage axis a is 2 - a
    array = np.transpose(image.array, (2 - slice_axis, 2 - row_axis, 2 - col_axis))
    normal = direction[:, slice_axis]
    origin = float(np.dot(np.asarray(image.origin, dtype=float), normal))
    positions = origin + np.arange(array.shape[0]) * spacing[slice_axis]
    orientation = tuple(float(v) for v in (*direction[:, col_axis], *direction[:, row_axis]))
    return array, (float(spacing[row_axis]), float(spacing[col_axis])), positions, orientation


def remap_spider_mask(mask: np.ndarray, scheme: LabelScheme, superior: np.ndarray) -> np.ndarray:
    """Map SPIDER values to the project's scheme, checking that vertebra 1 is the most caudal.

    Args:
        mask: (S, R, C) SPIDER mask.
        scheme: the label scheme.
        superior: (R, C) head-ward coordinate of each pixel.

    Raises:
        ValueError: if the vertebra numbering does not run upwards from the bottom.
    """
    present = [k for k in range(1, 26) if (mask == k).any()]
    if len(present) >= 2:
        heights = [float(superior[np.nonzero(mask == k)[1:]].mean()) for k in present]
        if heights[0] > heights[-1]:
            raise ValueError("SPIDER vertebra 1 is not the most caudal: unexpected numbering")
    out = np.zeros(mask.shape, dtype=np.uint8)
    for source, target in spider_label_map(scheme).items():
        out[mask == source] = target
    return out


def read_gradings(path: Path) -> dict[str, dict[str, dict[str, bool]]]:
    """Parse ``radiological_gradings.csv`` into patient -> level -> abnormality -> present.

    Raises:
        OSError: if the file cannot be read.
        KeyError: if a required column is missing.
    """
    levels = {1: "L5/S1", 2: "L4/L5", 3: "L3/L4", 4: "L2/L3", 5: "L1/L2", 6: "T12/L1"}
    levels.update({7: "T11/T12", 8: "T10/T11", 9: "T9/T10"})
    result: dict[str, dict[str, dict[str, bool]]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            level = levels.get(int(row["IVD label"]))
            if level is None:
                continue
            result.setdefault(row["Patient"], {})[level] = {
                "disc_bulge": row["Disc bulging"] == "1",
                "disc_protrusion": row["Disc herniation"] == "1",
                "disc_extrusion": False,
                "schmorl_node": row["UP endplate"] == "1" or row["LOW endplate"] == "1",
                "vertebral_degeneration": row["Modic"] not in ("0", ""),
            }
    return result


def load_spider_study(root: Path, patient: str, scheme: LabelScheme) -> StudySample:
    """Load one SPIDER patient (T2 reference, T1 if present, mask of the T2).

    Raises:
        FileNotFoundError: if the patient's T2 image is missing.
        ValueError: if the files are inconsistent.
    """
    t2_path = root / "images" / f"{patient}_t2.mha"
    if not t2_path.is_file():
        raise FileNotFoundError(t2_path)
    t2, spacing, positions, orientation = to_sagittal(read_mha(t2_path))
    t1_path = root / "images" / f"{patient}_t1.mha"
    t1 = to_sagittal(read_mha(t1_path))[0] if t1_path.is_file() else None
    labels = None
    mask_path = root / "masks" / f"{patient}_t2.mha"
    if mask_path.is_file():
        raw = to_sagittal(read_mha(mask_path))[0]
        superior = superior_coordinate(raw.shape[1:], orientation, spacing)
        labels = remap_spider_mask(raw, scheme, superior)
    gradings_path = root / "overview" / "radiological_gradings.csv"
    findings = read_gradings(gradings_path).get(patient) if gradings_path.is_file() else None
    annotated = tuple(s.value for s in scheme.structures if s.name != "S")
    return StudySample(
        study_id=f"spider-{patient}",
        t2=t2.astype(np.float32),
        t1=t1.astype(np.float32) if t1 is not None and t1.shape == t2.shape else None,
        labels=labels,
        annotated=annotated,
        pixel_spacing=spacing,
        slice_positions_mm=positions,
        orientation=orientation,
        findings=findings,
    )


def list_spider_patients(root: Path) -> list[str]:
    """Patient ids with a T2 image under ``root/images``, sorted numerically where possible.

    Raises:
        FileNotFoundError: if ``root/images`` does not exist.
    """
    images = root / "images"
    if not images.is_dir():
        raise FileNotFoundError(images)
    ids = {p.name[: -len("_t2.mha")] for p in images.glob("*_t2.mha")}
    return sorted(ids, key=lambda i: (len(i), i))
