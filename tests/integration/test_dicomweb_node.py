"""DICOMweb against real peers: ``pacs-node serve`` as a process, dicomweb-client as the client
of STOW-RS, QIDO-RS and WADO-RS, and Orthanc (its DICOMweb plugin) as a STOW-RS client.

The study sent is outside the intended use (no sagittal T2), so the node's real pipeline answers
it cheaply with a result of its own, the not-analysed SR, which DICOMweb then serves too.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dicomweb_client import DICOMwebClient
from pydicom import Dataset

from tests.helpers.dicom_factory import StudySpec, make_study, write_study
from tests.helpers.node_process import NodeProcess, run_node
from tests.helpers.orthanc import ORTHANC, run_orthanc, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BOUNDARY = "it-boundary-5d2"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


class Tokens:
    """One token per role, made by ``pacs-node tokens create`` against the node's database."""

    def __init__(self, node: NodeProcess) -> None:
        self.secrets = {role: _create_token(node, role) for role in ("viewer", "sender")}

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[role]}"}


def _create_token(node: NodeProcess, role: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "worker.main", "tokens", "create", f"it-{role}", "--role", role],
        env={**os.environ, **node.env},
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    workdir = tmp_path_factory.mktemp("dicomweb-node")
    with run_node(workdir, quiet_seconds="3", release_grace_seconds="1") as running:
        yield running


@pytest.fixture(scope="module")
def tokens(node: NodeProcess) -> Tokens:
    return Tokens(node)


def client(node: NodeProcess, tokens: Tokens, role: str) -> DICOMwebClient:
    return DICOMwebClient(url=f"{node.api_url}/dicom-web", headers=tokens.headers(role))


def encoded(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def body_of(*instances: bytes) -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    return b"".join(head + data + b"\r\n" for data in instances) + f"--{BOUNDARY}--".encode()


def test_stow_then_search_and_retrieve_images_and_the_nodes_result(
    node: NodeProcess, tokens: Tokens
) -> None:
    study = make_study(StudySpec(seed=21, series=("T2 TSE AX",), slices=3, size=64))
    study_uid = study[0].StudyInstanceUID
    answer = client(node, tokens, "sender").store_instances(study)
    assert [item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence] == [
        ds.SOPInstanceUID for ds in study
    ]
    assert "FailedSOPSequence" not in answer

    def sr_result() -> bool:
        return bool(
            node.query(
                "SELECT r.id FROM results r JOIN jobs j ON j.id = r.job_id "
                "JOIN studies s ON s.id = j.study_id "
                "WHERE s.study_instance_uid = ? AND r.kind = 'sr'",
                study_uid,
            )
        )

    wait_until(sr_result, 120, f"the not-analysed SR of the study\n{node.log.read_text()}")
    viewer = client(node, tokens, "viewer")
    found = viewer.search_for_studies(search_filters={"PatientID": "PHANTOM-001"})
    assert [Dataset.from_json(s).StudyInstanceUID for s in found] == [study_uid]
    assert Dataset.from_json(found[0]).NumberOfStudyRelatedInstances == 4
    series = [Dataset.from_json(s) for s in viewer.search_for_series(study_uid)]
    by_modality = {s.Modality: s for s in series}
    assert set(by_modality) == {"MR", "SR"}
    image = study[1]
    instances = viewer.search_for_instances(
        study_uid, image.SeriesInstanceUID, search_filters={"InstanceNumber": "2"}
    )
    assert [Dataset.from_json(i).SOPInstanceUID for i in instances] == [image.SOPInstanceUID]

    retrieved = viewer.retrieve_instance(study_uid, image.SeriesInstanceUID, image.SOPInstanceUID)
    assert retrieved.PixelData == image.PixelData and retrieved.PatientName == image.PatientName
    frames = viewer.retrieve_instance_frames(
        study_uid, image.SeriesInstanceUID, image.SOPInstanceUID, frame_numbers=[1]
    )
    assert frames == [image.PixelData]
    assert (
        viewer.retrieve_instance_frames(
            study_uid,
            image.SeriesInstanceUID,
            image.SOPInstanceUID,
            frame_numbers=[1],
            media_types=(("application/octet-stream", "*"),),
        )
    ) == [image.PixelData]
    metadata = viewer.retrieve_study_metadata(study_uid)
    assert len(metadata) == 4
    assert all("BulkDataURI" in m["7FE00010"] for m in metadata if "7FE00010" in m)

    sr_series = by_modality["SR"].SeriesInstanceUID
    (sr_instance,) = viewer.search_for_instances(study_uid, sr_series)
    sr_uid = Dataset.from_json(sr_instance).SOPInstanceUID
    report = viewer.retrieve_instance(study_uid, sr_series, sr_uid)
    assert report.Modality == "SR" and report.StudyInstanceUID == study_uid
    assert len(viewer.retrieve_study(study_uid)) == 4


def test_refusals_and_roles_over_http(node: NodeProcess, tokens: Tokens) -> None:
    good, bad_uid, short, other = make_study(StudySpec(seed=22, slices=4))[:4]
    with warnings.catch_warnings(action="ignore"):  # pydicom warns of the invalid UID
        bad_uid.SOPInstanceUID = "1.2.3.04"
        bad_uid_file = encoded(bad_uid)
    short.PixelData = short.PixelData[:10]
    other.StudyInstanceUID = "1.2.826.0.1.3680043.10.1439.77"
    url = f"{node.api_url}/dicom-web/studies/{good.StudyInstanceUID}"
    body = body_of(encoded(good), bad_uid_file, encoded(short), encoded(other))
    sender = {**tokens.headers("sender"), "Content-Type": STOW_TYPE}
    with httpx.Client(timeout=60) as http:
        answer = http.post(url, content=body, headers=sender)
        assert answer.status_code == 202, answer.text
        failed = Dataset.from_json(answer.json()).FailedSOPSequence
        assert [item.FailureReason for item in failed] == [0xC000, 0xC000, 0xA900]
        assert http.post(url, content=body_of(bad_uid_file), headers=sender).status_code == 409
        no_token = {"Content-Type": STOW_TYPE}
        assert http.post(url, content=body, headers=no_token).status_code == 401
        viewer = {**tokens.headers("viewer"), "Content-Type": STOW_TYPE}
        assert http.post(url, content=body, headers=viewer).status_code == 403
        studies = f"{node.api_url}/dicom-web/studies"
        assert http.get(studies, headers=tokens.headers("sender")).status_code == 403
        assert http.get(studies).status_code == 401
    recorded = node.query("SELECT status, calling_ae FROM receive_errors ORDER BY id")
    assert recorded[-4:] == [
        (0xC000, "it-sender"),
        (0xC000, "it-sender"),
        (0xA900, "it-sender"),
        (0xC000, "it-sender"),
    ]
    log = node.log.read_text()
    assert "refused instance from it-sender" in log
    assert good.StudyInstanceUID not in log and other.SOPInstanceUID not in log


@pytest.mark.skipif(not ORTHANC.exists(), reason="Orthanc is needed")
def test_orthanc_stores_a_study_into_the_node_by_stow_rs(
    node: NodeProcess, tokens: Tokens, tmp_path: Path
) -> None:
    spec = StudySpec(seed=23, series=("T2 TSE AX",), slices=4)
    files = write_study(spec, tmp_path / "study")
    server = {
        "Url": f"{node.api_url}/dicom-web/",
        "HttpHeaders": {"Authorization": f"Bearer {tokens.secrets['sender']}"},
    }
    with run_orthanc(tmp_path / "orthanc", dicomweb_servers={"node": server}) as orthanc:
        for path in files:
            orthanc.upload(path)
        (study_id,) = orthanc.get_json("/studies")
        orthanc.post("/dicom-web/servers/node/stow", json.dumps({"Resources": [study_id]}).encode())

        def held() -> int:
            return len(
                node.query(
                    "SELECT i.id FROM instances i JOIN series se ON se.id = i.series_id "
                    "JOIN studies s ON s.id = se.study_id WHERE s.study_instance_uid = ?",
                    spec.study_uid,
                )
            )

        wait_until(
            lambda: held() == len(files), 120, f"the study at the node\n{orthanc.log_tail()}"
        )

    def job_made() -> bool:
        return bool(
            node.query(
                "SELECT j.id FROM jobs j JOIN studies s ON s.id = j.study_id "
                "WHERE s.study_instance_uid = ?",
                spec.study_uid,
            )
        )

    wait_until(job_made, 120, f"a job for the study\n{node.log.read_text()}")
    callers = node.query(
        "SELECT calling_ae FROM studies WHERE study_instance_uid = ?", spec.study_uid
    )
    assert callers == [("it-sender",)]
