"""DICOMweb on the API (PostgreSQL, in process): STOW-RS as a C-STORE, QIDO-RS, WADO-RS."""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.pixels import pack_bits
from sqlalchemy import select

from pacs_node.api.dicomweb import stow
from pacs_node.api.dicomweb.multipart import parse_media_type, parse_multipart
from pacs_node.api.tokens import Role
from pacs_node.db.jobs import add_event
from pacs_node.db.tables import Instance, Job, ReceiveError, Result, Study
from pacs_node.domain import JobState, StudyStatus
from pacs_node.scp.statuses import StoreStatus
from tests.helpers.dicom_factory import StudySpec, make_study
from tests.unit.api.conftest import Node
from tests.unit.api.seed import seg_job

BOUNDARY = "test-boundary-7c1"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
FAILED, REFERENCED = "00081198", "00081199"
FAILURE_REASON, REFERENCED_SOP_INSTANCE = "00081197", "00081155"


def encoded(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def body_of(*instances: bytes) -> bytes:
    parts = [
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
        for data in instances
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def stow_to(node: Node, body: bytes, path: str = "/dicom-web/studies", **kwargs: object) -> dict:
    headers = {"Content-Type": STOW_TYPE, **node.headers(Role.SENDER)}
    response = node.client.post(path, content=body, headers=headers, **kwargs)  # type: ignore[arg-type]
    return {"status": response.status_code, "json": response.json() if response.content else {}}


def reasons(answer: dict) -> list[int]:
    return [
        item[FAILURE_REASON]["Value"][0] for item in answer["json"].get(FAILED, {}).get("Value", [])
    ]


def test_stow_stores_durably_answers_with_urls_and_marks_the_release(node: Node) -> None:
    study = make_study(StudySpec(seed=3, series=("T2 TSE SAG",), slices=3))
    answer = stow_to(node, body_of(*map(encoded, study)))
    assert answer["status"] == 200, answer
    referenced = answer["json"][REFERENCED]["Value"]
    assert [r[REFERENCED_SOP_INSTANCE]["Value"][0] for r in referenced] == [
        ds.SOPInstanceUID for ds in study
    ]
    url = referenced[0]["00081190"]["Value"][0]
    assert url.endswith(
        f"/dicom-web/studies/{study[0].StudyInstanceUID}/series/"
        f"{study[0].SeriesInstanceUID}/instances/{study[0].SOPInstanceUID}"
    )
    with node.sessions() as session:
        rows = session.scalars(select(Instance).order_by(Instance.id)).all()
        row = session.scalars(select(Study)).one()
    assert [r.sop_instance_uid for r in rows] == [ds.SOPInstanceUID for ds in study]
    assert {r.calling_ae for r in rows} == {"sender-token"}
    assert row.status == StudyStatus.RECEIVING.value and row.last_released_at is not None
    assert (node.spool / rows[0].path).read_bytes() == encoded(study[0])
    again = stow_to(node, body_of(encoded(study[0])))  # a repeat is a success, as with C-STORE
    assert again["status"] == 200
    with node.sessions() as session:
        assert session.scalars(select(Instance.times_received).order_by(Instance.id)).first() == 2


def test_refusals_are_failed_items_with_the_c_store_status_rows_and_clean_logs(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad_uid, short, other_study = make_study(StudySpec(seed=4, slices=4))[:4]
    with warnings.catch_warnings(action="ignore"):  # pydicom warns of the invalid UID
        bad_uid.SOPInstanceUID = "1.2.03.x"
        bad_uid_file = encoded(bad_uid)
    short.PixelData = short.PixelData[:100]
    other_study.StudyInstanceUID = "1.2.826.0.1.3680043.10.1439.99"
    caplog.set_level(logging.INFO)
    body = body_of(
        encoded(good), bad_uid_file, encoded(short), encoded(other_study), b"not dicom at all"
    )
    answer = stow_to(node, body, f"/dicom-web/studies/{good.StudyInstanceUID}")
    assert answer["status"] == 202, answer
    assert reasons(answer) == [
        StoreStatus.CANNOT_UNDERSTAND,
        StoreStatus.CANNOT_UNDERSTAND,
        StoreStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
        StoreStatus.CANNOT_UNDERSTAND,
    ]
    failed = answer["json"][FAILED]["Value"]
    assert REFERENCED_SOP_INSTANCE not in failed[0]  # an invalid UID is not echoed
    assert failed[2][REFERENCED_SOP_INSTANCE]["Value"] == [other_study.SOPInstanceUID]
    with node.sessions() as session:
        rows = session.scalars(select(ReceiveError).order_by(ReceiveError.id)).all()
    assert [r.status for r in rows] == reasons(answer)
    assert {(r.calling_ae, r.peer_address) for r in rows} == {("sender-token", "testclient")}
    assert "Study Instance UID differs from the study in the request URL" in rows[2].reason
    refused = [r.getMessage() for r in caplog.records if r.name == "pacs_node.intake"]
    assert len(refused) == 4 and all("refused instance from sender-token" in r for r in refused)
    node_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("pacs_node"))
    assert "STOW-RS from sender-token at testclient: 1 source images stored, 4 refused" in node_log
    for uid in (good.StudyInstanceUID, short.SOPInstanceUID, other_study.StudyInstanceUID):
        assert uid not in node_log
    assert "PHANTOM" not in node_log
    assert stow_to(node, body_of(bad_uid_file))["status"] == 409


def test_derived_objects_are_stored_without_opening_a_study(node: Node) -> None:
    job_id = seg_job(node.sessions, node.spool)
    with node.sessions() as session:
        seg_path = session.scalars(select(Result.path).where(Result.job_id == job_id)).one()
    seg = dcmread(node.spool / seg_path)
    seg.StudyInstanceUID, seg.SOPInstanceUID = "1.2.826.0.1.3680043.10.1439.5", "2.25.7"
    assert stow_to(node, body_of(encoded(seg)))["status"] == 200
    with node.sessions() as session:
        study = session.scalars(
            select(Study).where(Study.study_instance_uid == seg.StudyInstanceUID)
        ).one()
    assert study.status == StudyStatus.DERIVED_ONLY.value and study.last_released_at is None


def test_content_type_body_and_size_are_checked(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = node.headers(Role.SENDER)
    body = body_of(encoded(make_study(StudySpec(seed=5, slices=1))[0]))
    for content_type in (
        "application/dicom",
        f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}',
    ):
        answer = node.client.post(
            "/dicom-web/studies", content=body, headers={**sender, "Content-Type": content_type}
        )
        assert answer.status_code == 415
    headers = {**sender, "Content-Type": STOW_TYPE}
    for garbage in (b"no parts here", f"--{BOUNDARY}--\r\n".encode()):
        assert (
            node.client.post("/dicom-web/studies", content=garbage, headers=headers).status_code
            == 400
        )
    no_boundary = {**sender, "Content-Type": 'multipart/related; type="application/dicom"'}
    assert (
        node.client.post("/dicom-web/studies", content=body, headers=no_boundary).status_code == 400
    )
    monkeypatch.setattr(stow, "MAX_BODY_BYTES", len(body) - 1)
    assert node.client.post("/dicom-web/studies", content=body, headers=headers).status_code == 413
    with node.sessions() as session:
        assert session.scalars(select(Instance)).all() == []


def test_roles_sender_stores_viewer_reads_admin_does_both(node: Node) -> None:
    body = body_of(encoded(make_study(StudySpec(seed=6, slices=1))[0]))
    post = {"content": body, "headers": {"Content-Type": STOW_TYPE}}
    assert node.client.post("/dicom-web/studies", **post).status_code == 401  # type: ignore[arg-type]
    for role, stow_code, qido_code in (
        (Role.VIEWER, 403, 200),
        (Role.SENDER, 200, 403),
        (Role.ADMIN, 200, 200),
    ):
        headers = {**node.headers(role), "Content-Type": STOW_TYPE}
        assert (
            node.client.post("/dicom-web/studies", content=body, headers=headers).status_code
            == stow_code
        )
        assert (
            node.client.get("/dicom-web/studies", headers=node.headers(role)).status_code
            == qido_code
        )


def _values(item: dict, tag: str) -> list:
    return item.get(tag, {}).get("Value", [])


def test_qido_finds_images_and_the_nodes_results(node: Node) -> None:
    job_id = seg_job(node.sessions, node.spool)
    viewer = node.headers(Role.VIEWER)
    studies = node.client.get("/dicom-web/studies", headers=viewer).json()
    assert len(studies) == 1
    study = studies[0]
    assert _values(study, "00080061") == ["MR", "SEG"]  # ModalitiesInStudy
    assert _values(study, "00201206") == [2] and _values(study, "00201208") == [6]
    assert _values(study, "00100020") == ["PHANTOM-001"] and _values(study, "00080020") == [
        "20260301"
    ]
    uid = _values(study, "0020000D")[0]

    def count(path: str, **params: str) -> int:
        response = node.client.get(f"/dicom-web{path}", params=params, headers=viewer)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/dicom+json")
        return len(response.json())

    assert count("/studies", PatientID="PHANTOM-001", StudyDate="20260101-20261231") == 1
    assert count("/studies", PatientID="OTHER") == 0
    assert count("/studies", Modality="SEG") == 1
    assert count(f"/studies/{uid}/series") == 2
    assert count("/series", Modality="SEG") == 1
    assert count("/instances", Modality="MR", limit="2", offset="1") == 2
    seg_series = node.client.get("/dicom-web/series", params={"Modality": "SEG"}, headers=viewer)
    series_uid = _values(seg_series.json()[0], "0020000E")[0]
    assert count(f"/studies/{uid}/series/{series_uid}/instances") == 1
    described = node.client.get(
        "/dicom-web/studies", params={"includefield": "00081030"}, headers=viewer
    ).json()[0]
    assert "00081030" in described or "00080090" in described
    assert node.client.get("/dicom-web/studies?Nonsense=1", headers=viewer).status_code == 400
    assert node.client.get("/dicom-web/studies/1.02/series", headers=viewer).status_code == 400
    with node.sessions.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.state = JobState.SUPERSEDED.value
        add_event(session, job, "superseded")
    assert count(f"/studies/{uid}/series") == 1  # results of a superseded job are not shown


def test_wado_instances_metadata_frames_and_bulk_data(node: Node) -> None:
    seg_job(node.sessions, node.spool)
    viewer = node.headers(Role.VIEWER)
    with node.sessions() as session:
        image = session.scalars(select(Instance).order_by(Instance.id)).first()
        seg_row = session.scalars(select(Result)).one()
        assert image is not None
        series_uid = image.series.series_instance_uid
        study_uid = session.scalars(select(Study.study_instance_uid)).one()
    base = f"/dicom-web/studies/{study_uid}"
    whole = node.client.get(base, headers=viewer)
    assert whole.status_code == 200
    media = parse_media_type(whole.headers["content-type"])
    assert media.parameters["type"] == "application/dicom"
    parts = parse_multipart(whole.content, media.parameters["boundary"])
    assert len(parts) == 6
    assert {dcmread(io.BytesIO(p.content)).Modality for p in parts} == {"MR", "SEG"}

    image_path = f"{base}/series/{series_uid}/instances/{image.sop_instance_uid}"
    one = node.client.get(image_path, headers=viewer)
    content = parse_multipart(
        one.content, parse_media_type(one.headers["content-type"]).parameters["boundary"]
    )
    assert content[0].content == (node.spool / image.path).read_bytes()

    metadata = node.client.get(f"{image_path}/metadata", headers=viewer).json()
    pixel_uri = metadata[0]["7FE00010"]["BulkDataURI"]
    assert pixel_uri.endswith(f"{image_path}/bulkdata/7FE00010")
    assert metadata[0]["00100020"]["Value"] == ["PHANTOM-001"]
    held = dcmread(node.spool / image.path)
    bulk = node.client.get(f"{image_path}/bulkdata/7FE00010", headers=viewer)
    boundary = parse_media_type(bulk.headers["content-type"]).parameters["boundary"]
    assert parse_multipart(bulk.content, boundary)[0].content == held.PixelData

    frame = node.client.get(f"{image_path}/frames/1", headers=viewer)
    assert (
        parse_media_type(frame.headers["content-type"]).parameters["type"]
        == "application/octet-stream"
    )
    boundary = parse_media_type(frame.headers["content-type"]).parameters["boundary"]
    assert parse_multipart(frame.content, boundary)[0].content == held.PixelData

    seg_path = f"{base}/series/{seg_row.series_instance_uid}/instances/{seg_row.sop_instance_uid}"
    seg = dcmread(node.spool / seg_row.path)
    frames = node.client.get(f"{seg_path}/frames/2,1", headers=viewer)
    boundary = parse_media_type(frames.headers["content-type"]).parameters["boundary"]
    pixels = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    assert [p.content for p in parse_multipart(frames.content, boundary)] == [
        pack_bits(pixels[1], pad=False),
        pack_bits(pixels[0], pad=False),
    ]
    assert np.any(pixels)

    assert node.client.get(f"{seg_path}/frames/99", headers=viewer).status_code == 404
    assert node.client.get(f"{seg_path}/frames/x", headers=viewer).status_code == 400
    assert node.client.get(f"{base}/series/2.25.1", headers=viewer).status_code == 404
    assert node.client.get("/dicom-web/studies/1.2.3.x", headers=viewer).status_code == 400
    json_only = {**viewer, "Accept": "application/json"}
    assert node.client.get(image_path, headers=json_only).status_code == 406
