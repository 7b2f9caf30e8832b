"""A study's results as data: the findings and measurements of its (de-identified) SR, the model,
and the reviewers' feedback, without who gave it, when, or their free text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pacs_node.db.feedback import FeedbackEntry, Subject
from pacs_node.export.selection import ExportJob
from pacs_node.results.sr_findings import levels_from_sr


def results_summary(
    job: ExportJob, sr_path: Path, feedback: Sequence[FeedbackEntry]
) -> dict[str, Any]:
    """The ``results.json`` of one exported study; ``feedback`` is every verdict on the study,
    whichever version of it was reviewed (``on_exported_results`` says which were on this one).

    Raises:
        OSError: if the SR cannot be read.
        ValueError: if it is not a measurement report.
    """
    levels = levels_from_sr(sr_path)
    return {
        "model": {
            "name": job.model_name,
            "checkpoint_sha256": job.checkpoint_sha256,
            "config_hash": job.config_hash,
        },
        "levels": {
            level: {
                "findings": calls,
                "measurements_mm": (
                    {"disc_height": levels.disc_heights[level]}
                    if level in levels.disc_heights
                    else {}
                ),
            }
            for level, calls in levels.findings.items()
        },
        "feedback": [_verdict(entry, job) for entry in feedback],
    }


def _verdict(entry: FeedbackEntry, job: ExportJob) -> dict[str, Any]:
    finding = entry.subject == Subject.FINDING.value
    return {
        "subject": entry.subject,
        "level": entry.level,
        "abnormality": entry.abnormality,
        "verdict": entry.verdict,
        "amended_value": entry.amended_value if finding else None,
        "reference_segmentation": entry.reference_sop_instance_uid is not None,
        "on_exported_results": entry.job_id == job.job_id,
    }
