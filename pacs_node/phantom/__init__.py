"""DICOM writer for synthetic lumbar spine MRI studies (the generator lives in ``models.phantom``).

This package takes plain arrays (``StudyImages``) and never imports ``models``;
``worker.commands.phantom`` joins the two. ``build_series_datasets`` gives the MR Image Storage
instances in memory, ``write_study`` writes them with the ground truth (format: ``truth``).
"""

from pacs_node.phantom.datasets import build_series_datasets, study_uids
from pacs_node.phantom.truth import load_label_volume, read_truth
from pacs_node.phantom.types import (
    PatientInfo,
    SeriesImage,
    StudyImages,
    WrittenSeries,
    WrittenStudy,
)
from pacs_node.phantom.writer import write_study

__all__ = [
    "PatientInfo",
    "SeriesImage",
    "StudyImages",
    "WrittenSeries",
    "WrittenStudy",
    "build_series_datasets",
    "load_label_volume",
    "read_truth",
    "study_uids",
    "write_study",
]
