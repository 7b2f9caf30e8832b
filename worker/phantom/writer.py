"""Write a phantom study to disk: DICOM per series plus the ground truth (see ``truth``)."""

from __future__ import annotations

import json
from pathlib import Path

from models.labels import load_label_scheme
from models.phantom import PhantomStudy
from worker.phantom.datasets import build_series_datasets, study_uids
from worker.phantom.truth import (
    FORMAT_NAME,
    FORMAT_VERSION,
    TRUTH_FILE,
    labels_file,
    write_label_volume,
)
from worker.phantom.types import PatientInfo, WrittenSeries, WrittenStudy


def write_study(
    study: PhantomStudy,
    out_dir: Path,
    *,
    uid_key: str = "",
    patient: PatientInfo | None = None,
    uid_prefix: str | None = None,
) -> WrittenStudy:
    """Write every series of ``study`` as DICOM into ``out_dir``, with ``truth.json`` beside.

    Rerunning with the same study writes byte-identical DICOM files (UIDs and dates come from the
    seed).

    Args:
        study: The study.
        out_dir: The study's folder (created if missing).
        uid_key: Extra entropy for its UIDs (e.g. the size preset it was generated with).
        patient: Patient and study time; derived from the seed when None.
        uid_prefix: Root for generated UIDs; pydicom's root when None.

    Returns:
        The UIDs and paths written.

    Raises:
        ValueError: if a series is malformed or the prefix is invalid.
        OSError: if a file cannot be written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    who = patient or PatientInfo.from_seed(study.seed)
    uids = study_uids(study, uid_key, uid_prefix)
    written = []
    for index, series in enumerate(study.series):
        datasets = build_series_datasets(
            study, index, uid_key=uid_key, patient=who, uid_prefix=uid_prefix
        )
        folder = out / f"{index + 1:02d}_{series.role}"
        folder.mkdir(exist_ok=True)
        paths = []
        for ds in datasets:
            path = folder / f"{int(ds.InstanceNumber):04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
        labels_path = None
        if series.labels is not None:
            labels_path = out / labels_file(series.role)
            write_label_volume(labels_path, series.labels, series.abnormality_masks)
        written.append(
            WrittenSeries(
                role=series.role,
                series_instance_uid=str(datasets[0].SeriesInstanceUID),
                series_number=index + 1,
                sop_instance_uids=tuple(str(ds.SOPInstanceUID) for ds in datasets),
                paths=tuple(paths),
                labels_path=labels_path,
            )
        )
    truth = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "seed": study.seed,
        "study_instance_uid": uids.study,
        "frame_of_reference_uid": uids.frame_of_reference,
        "patient_id": who.patient_id,
        "findings": study.findings,
        "measurements": study.measurements,
        "report": study.report,
        "visible_structures": study.visible_structures,
        "centres": {k: list(v) for k, v in study.centres.items()},
        "anatomy": study.anatomy,
        "label_names": {str(s.value): s.name for s in load_label_scheme().structures},
        "series": [
            {
                "role": w.role,
                "series_number": w.series_number,
                "series_instance_uid": w.series_instance_uid,
                "description": s.description,
                "files": [p.relative_to(out).as_posix() for p in w.paths],
                "sop_instance_uids": list(w.sop_instance_uids),
                "labels": w.labels_path.name if w.labels_path else None,
            }
            for w, s in zip(written, study.series, strict=True)
        ],
    }
    truth_path = out / TRUTH_FILE
    truth_path.write_text(json.dumps(truth, indent=2) + "\n")
    return WrittenStudy(
        study_instance_uid=uids.study,
        directory=out,
        truth_path=truth_path,
        series=tuple(written),
    )
