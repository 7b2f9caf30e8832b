"""The export's layout: one folder per study, named by its place in the export, and a manifest.

::

    OUT/manifest.json
    OUT/study-0001/SAG_T2/0001.dcm ...   the analysed series, by role
    OUT/study-0001/seg.dcm               the node's SEG (references the images above)
    OUT/study-0001/sr.dcm                the node's TID 1500 SR
    OUT/study-0001/results.json          findings, measurements, model, feedback

Nothing in a name or the manifest comes from the study: names are ordinals, identifiers the
de-identified ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from pacs_node.db.feedback import FeedbackEntry
from pacs_node.export.deidentify import LIBRARY, PROFILE, Deidentifier, has_burned_in_annotation
from pacs_node.export.selection import ExportJob
from pacs_node.export.summary import results_summary
from pacs_node.spool import Spool

MANIFEST = "manifest.json"
FORMAT = "pacs-node research export 1"


@dataclass(frozen=True)
class ExportCounts:
    """What an export holds, and what it left out."""

    studies: int
    images: int
    burned_in_left_out: int


def write_export(
    jobs: Sequence[ExportJob],
    feedback: Mapping[int, Sequence[FeedbackEntry]],
    spool: Spool,
    out: Path,
    deidentifier: Deidentifier,
) -> ExportCounts:
    """Write the jobs' studies, de-identified, and the manifest into the empty folder ``out``.

    ``feedback`` is by job id. A study with an image flagged Burned In Annotation is left out.

    Raises:
        OSError: if a file cannot be read or written.
        ValueError: if a spool path leaves the spool or an SR is not a measurement report.
    """
    studies: list[dict[str, Any]] = []
    burned_in = 0
    for job in jobs:
        images = {role: [_read(spool, p) for p in paths] for role, paths in job.images.items()}
        if any(has_burned_in_annotation(ds) for series in images.values() for ds in series):
            burned_in += 1
            continue
        folder = out / f"study-{len(studies) + 1:04d}"
        files = _write_objects(
            folder, images, _read(spool, job.seg), _read(spool, job.sr), deidentifier
        )
        summary = results_summary(job, folder / "sr.dcm", feedback.get(job.job_id, ()))
        (folder / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
        files.append({"path": "results.json", "kind": "results"})
        studies.append(_study_entry(folder, files))
    (out / MANIFEST).write_text(json.dumps(_manifest(studies, burned_in), indent=2) + "\n")
    return ExportCounts(
        studies=len(studies),
        images=sum(f["kind"] == "image" for s in studies for f in s["files"]),
        burned_in_left_out=burned_in,
    )


def _read(spool: Spool, relative_path: str) -> Dataset:
    return pydicom.dcmread(spool.path_of(relative_path))


def _write_objects(
    folder: Path,
    images: Mapping[str, Sequence[Dataset]],
    seg: Dataset,
    sr: Dataset,
    deidentifier: Deidentifier,
) -> list[dict[str, str]]:
    """De-identify and write a study's objects; returns their manifest entries."""
    files: list[dict[str, str]] = []
    for role, series in images.items():
        for number, ds in enumerate(series, start=1):
            path = f"{role}/{number:04d}.dcm"
            _write(deidentifier, ds, folder / path)
            files.append({"path": path, "kind": "image", "series_role": role})
    for kind, ds in (("seg", seg), ("sr", sr)):
        _write(deidentifier, ds, folder / f"{kind}.dcm")
        files.append({"path": f"{kind}.dcm", "kind": kind})
    return files


def _write(deidentifier: Deidentifier, ds: Dataset, path: Path) -> None:
    deidentifier(ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _study_entry(folder: Path, files: list[dict[str, str]]) -> dict[str, Any]:
    """A study in the manifest, by its folder and its de-identified identifiers."""
    sr = pydicom.dcmread(folder / "sr.dcm", stop_before_pixels=True)
    return {
        "folder": folder.name,
        "patient_id": str(sr.PatientID),
        "study_instance_uid": str(sr.StudyInstanceUID),
        "files": files,
    }


def _manifest(studies: list[dict[str, Any]], burned_in: int) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "deidentification": {
            "profile": "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile",
            "method_codes": [
                {"scheme": c.scheme_designator, "value": c.value, "meaning": c.meaning}
                for c in PROFILE
            ],
            "library": LIBRARY,
            "identifiers": "UIDs remapped with a secret of this export, the same in every file; "
            "names and IDs pseudonymised; dates shifted by one offset",
        },
        "left_out": {"studies_with_burned_in_annotation": burned_in},
        "studies": studies,
    }
