"""A corrected SEG sent back to a real ``pacs-node serve`` (DCMTK ``storescu``) that references
the node's own SEG becomes the study's reference segmentation: recorded as feedback attributed to
the sender, never analysed, never sent anywhere."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset

from pacs_node.results.inputs import AlgorithmInfo, ResultContext
from pacs_node.results.seg import build_seg
from tests.helpers.dicom_factory import StudySpec, make_series
from tests.helpers.node_process import NodeProcess, run_node

pytestmark = pytest.mark.integration

STORESCU = "/usr/bin/storescu"
if not Path(STORESCU).exists():
    pytest.skip("DCMTK is not installed (apt-get install dcmtk)", allow_module_level=True)

T = "2026-03-01 08:00:00"
ALGORITHM = AlgorithmInfo("lumbarclip", "0.1", "ab" * 32, "cfg")


def segmentation(images: list[Dataset], job_key: str, rows: slice) -> Dataset:
    """A SEG of the L4/L5 disc over ``images`` (UIDs derived from ``job_key``)."""
    labels = np.zeros((len(images), 32, 32), dtype=np.uint8)
    labels[1:4, rows, 8:20] = 12
    context = ResultContext(job_key=job_key, created=datetime(2026, 3, 1), software_version="0")
    return build_seg(images, labels, {"L4/L5": 12}, algorithm=ALGORITHM, context=context)


def study_images() -> list[Dataset]:
    spec = StudySpec(seed=91, series=("T2 TSE SAG",), slices=5, size=32)
    images = list(make_series(spec, "T2 TSE SAG"))
    for ds in images:  # patient and study module attributes a SEG copies from its source
        ds.PatientBirthDate, ds.PatientSex, ds.ReferringPhysicianName = "19700101", "F", ""
        ds.StudyDate, ds.StudyTime, ds.StudyID = "20260301", "080000", "1"
        ds.PositionReferenceIndicator, ds.Manufacturer = "", "ACME"
    return images


def corrected(own: Dataset, images: list[Dataset]) -> Dataset:
    """A reviewer's corrected SEG: other outlines, and the node's SEG named among its
    referenced series (as a segmentation editor records what it started from)."""
    fixed = segmentation(images, "workstation/1", slice(12, 16))
    item, instance = Dataset(), Dataset()
    instance.ReferencedSOPClassUID = own.SOPClassUID
    instance.ReferencedSOPInstanceUID = own.SOPInstanceUID
    item.SeriesInstanceUID = own.SeriesInstanceUID
    item.ReferencedInstanceSequence = [instance]
    fixed.ReferencedSeriesSequence.append(item)
    return fixed


def seed_done_job(node: NodeProcess, images: list[Dataset], own: Dataset) -> None:
    """The study as the node holds it after analysing it: complete, one done job, its SEG."""
    node.query(
        "INSERT INTO studies (id, study_instance_uid, status, first_received_at, "
        "last_received_at, force_complete) VALUES (1, ?, 'complete', ?, ?, 0)",
        images[0].StudyInstanceUID,
        T,
        T,
    )
    node.query(
        "INSERT INTO jobs (id, study_id, version, state, retryable, attempts, model_name, "
        "checkpoint_sha256, config_hash, created_at, updated_at) "
        "VALUES (1, 1, 1, 'done', 0, 1, 'lumbarclip', ?, 'cfg', ?, ?)",
        "ab" * 32,
        T,
        T,
    )
    node.query(
        "INSERT INTO results (job_id, kind, sop_class_uid, series_instance_uid, "
        "sop_instance_uid, path, sha256, size_bytes, created_at) "
        "VALUES (1, 'seg', ?, ?, ?, 'results/1/seg.dcm', ?, 1, ?)",
        own.SOPClassUID,
        own.SeriesInstanceUID,
        own.SOPInstanceUID,
        "0" * 64,
        T,
    )


def wait_until(read: Callable[[], object], expected: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    assert value == expected


def test_a_corrected_seg_is_the_reference_segmentation_and_opens_no_job(tmp_path: Path) -> None:
    images = study_images()
    own = segmentation(images, "node/1", slice(12, 15))
    path = tmp_path / "corrected.dcm"
    corrected(own, images).save_as(path, enforce_file_format=True)
    with run_node(tmp_path) as node:
        seed_done_job(node, images, own)
        address = ["127.0.0.1", str(node.port)]
        sent = subprocess.run(
            [STORESCU, "-R", "-aet", "WORKSTATION", "-aec", "LUMBAR_NODE", *address, str(path)],
            env={**os.environ, "TCP_NODELAY": "1"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr
        wait_until(
            lambda: node.query(
                "SELECT subject, verdict, amended_value, given_by, model_name, job_id "
                "FROM feedback WHERE reference_instance_id IS NOT NULL"
            ),
            [
                (
                    "segmentation",
                    "amend",
                    "reference SEG received",
                    "ae:WORKSTATION",
                    "lumbarclip",
                    1,
                )
            ],
        )
        assert node.query("SELECT origin FROM series") == [("reference",)]
        # The C-STORE was answered after its rows were committed: the study stayed complete, so
        # assembly never looks at it again (only a receiving study completes into a job).
        assert node.query("SELECT id, state FROM jobs") == [(1, "done")]
        assert node.query("SELECT status FROM studies") == [("complete",)]
        assert node.query("SELECT count(*) FROM deliveries") == [(0,)]
