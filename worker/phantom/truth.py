"""The ground truth written beside a phantom study's DICOM files, and how to read it back.

Layout of a study folder (``write_study``)::

    <study>/
      truth.json                  findings, measurements, report, UIDs, files
      labels_<ROLE>.npz           per series with labels (SAG_T1, SAG_T2, SAG_STIR, AX_T2)
      <NN>_<ROLE>/<IIII>.dcm      DICOM, NN = SeriesNumber, IIII = InstanceNumber

``truth.json`` (``"format": "pacs-node-phantom-truth"``, ``"version": 1``) holds ``seed``,
``study_instance_uid``, ``frame_of_reference_uid``, ``patient_id``, ``findings`` (disc level ->
abnormality key -> bool), ``measurements`` (disc level -> disc height in mm), ``report`` (text),
``visible_structures`` (cranio-caudal names), ``centres`` (structure name -> ``[x, y, z]`` of its
centre in patient coordinates, mm), ``anatomy`` (lordosis, transitional anatomy, ...),
``label_names`` (label value as a string -> structure name) and ``series``: per series its
``role``, ``series_number``, ``series_instance_uid``, ``description``, ``files`` and
``sop_instance_uids`` (both in InstanceNumber order, files relative to the study folder) and
``labels`` (the npz file name, or null).

Each ``labels_<ROLE>.npz`` holds ``labels``: uint8 ``(slices, rows, cols)`` in the same slice
order as InstanceNumber (row and column as in the DICOM pixel data), values per ``label_names``
(0 = background); and one bool array of the same shape per abnormality present in that series,
named by its key (e.g. ``disc_protrusion``). A voxel ``(k, i, j)`` sits at
``ImagePositionPatient[k] + j * PixelSpacing[1] * row_cosines + i * PixelSpacing[0] * col_cosines``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

TRUTH_FILE = "truth.json"
FORMAT_NAME = "pacs-node-phantom-truth"
FORMAT_VERSION = 1


def labels_file(role: str) -> str:
    """File name of a series' label volume."""
    return f"labels_{role}.npz"


def write_label_volume(
    path: Path, labels: np.ndarray, abnormality_masks: dict[str, np.ndarray]
) -> None:
    """Save a label volume and its abnormality masks (compressed npz).

    Raises:
        ValueError: if a mask's shape differs from the labels' or a key is "labels".
        OSError: if the file cannot be written.
    """
    if "labels" in abnormality_masks:
        raise ValueError('"labels" is reserved for the label volume')
    for key, mask in abnormality_masks.items():
        if mask.shape != labels.shape:
            raise ValueError(f"mask {key} has shape {mask.shape}, labels {labels.shape}")
    arrays = {"labels": labels.astype(np.uint8)}
    arrays |= {k: m.astype(bool) for k, m in abnormality_masks.items()}
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]


def read_truth(study_dir: Path) -> dict[str, Any]:
    """Read ``truth.json`` of a study folder.

    Raises:
        OSError: if the file cannot be read.
        ValueError: if it is not a phantom truth file of a known version.
    """
    data = json.loads((Path(study_dir) / TRUTH_FILE).read_text())
    if data.get("format") != FORMAT_NAME or data.get("version") != FORMAT_VERSION:
        raise ValueError(f"{study_dir} does not hold a version {FORMAT_VERSION} phantom truth")
    return dict(data)


def load_label_volume(study_dir: Path, role: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The label volume and abnormality masks of the series ``role``.

    Raises:
        OSError: if the file cannot be read.
        KeyError: if the series has no label volume.
    """
    path = Path(study_dir) / labels_file(role)
    if not path.exists():
        raise KeyError(role)
    with np.load(path) as data:
        labels = data["labels"]
        masks = {k: data[k] for k in data.files if k != "labels"}
    return labels, masks
