"""DICOM writer for synthetic lumbar spine MRI studies made by ``models.phantom``.

``build_series_datasets`` gives the MR Image Storage instances of a ``PhantomStudy`` in memory,
``write_study`` writes them with the ground truth (format: ``truth``). Tests, the demo and the
benchmarks use it; the node itself never does.
"""

from worker.phantom.datasets import build_series_datasets, study_uids
from worker.phantom.truth import load_label_volume, read_truth
from worker.phantom.types import PatientInfo, WrittenSeries, WrittenStudy
from worker.phantom.writer import write_study

__all__ = [
    "PatientInfo",
    "WrittenSeries",
    "WrittenStudy",
    "build_series_datasets",
    "load_label_volume",
    "read_truth",
    "study_uids",
    "write_study",
]
