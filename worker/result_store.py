"""Store results: a job's encoded objects become files, rows and pending deliveries at once.

Files are written first (atomically); the rows, the deliveries to every destination that takes
them and the job's move to ``results_ready`` (with the model and its quality check on the job)
are one transaction, which commits only while the
worker still holds the job's lease. Nothing is sent before this commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pacs_node.db.deliveries import create_deliveries
from pacs_node.db.jobs import review_columns
from pacs_node.db.leases import finish_running
from pacs_node.db.results import add_result
from pacs_node.destinations import Destinations
from pacs_node.domain import JobState, ResultKind
from pacs_node.results.inputs import AlgorithmInfo, StudyQuality
from pacs_node.spool import Spool, atomic_write
from worker.lease import LeaseLostError
from worker.pipeline import EncodedResult, ResultBundle

RESULTS_FOLDER = "results"


def store_results(
    sessions: sessionmaker[Session],
    spool: Spool,
    destinations: Destinations,
    job_id: int,
    owner: str,
    bundle: ResultBundle,
) -> None:
    """Write the encoded results and their rows and deliveries; the job becomes
    ``results_ready``.

    Raises:
        LeaseLostError: if ``owner`` no longer holds the job (nothing is recorded).
        OSError: if a file cannot be written.
    """
    written = [(result, _write(spool, job_id, result)) for result in bundle.results]
    with sessions.begin() as session:
        rows = [add_result(session, job_id, result, path) for result, path in written]
        deliveries = create_deliveries(session, job_id, rows, destinations)
        kinds = ", ".join(result.kind.value for result in bundle.results)
        sent_to = "" if deliveries else "; nothing to send: no destination takes them"
        review = (
            "; low confidence: review" if bundle.quality and bundle.quality.needs_review else ""
        )
        done = finish_running(
            session,
            job_id,
            owner,
            JobState.RESULTS_READY,
            f"results stored: {kinds}{review}{sent_to}",
            details={"timings": bundle.timings},
            **_model_columns(bundle.algorithm),
            **_quality_columns(bundle.quality),
        )
        if not done:
            raise LeaseLostError(f"job {job_id} is no longer leased to {owner}")


def _write(spool: Spool, job_id: int, result: EncodedResult) -> str:
    """Write one result into the job's results folder; its spool-relative path."""
    relative = f"{RESULTS_FOLDER}/job-{job_id}/{_file_name(result)}"
    atomic_write(spool.path_of(relative), result.data)
    return relative


def _file_name(result: EncodedResult) -> str:
    if result.kind is ResultKind.ORU:
        return f"oru-{result.control_id}.hl7"
    return f"{result.kind.value}-{result.sop_instance_uid}.dcm"


def _model_columns(algorithm: AlgorithmInfo | None) -> dict[str, Any]:
    """The job columns that identify the model (none when no model ran)."""
    if algorithm is None:
        return {}
    return {
        "model_name": algorithm.name[:64],
        "config_hash": algorithm.config_hash[:64],
        "checkpoint_sha256": algorithm.checkpoint_sha256[:64],
    }


def _quality_columns(quality: StudyQuality | None) -> dict[str, Any]:
    """The job columns of the model's quality check (none when no model ran)."""
    if quality is None:
        return {}
    return review_columns(quality.needs_review, quality.reasons)
