"""The admin HTTP API on PostgreSQL: access control, filters, detail, actions, overlay, probes."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from pacs_node.api.server import ApiServer
from pacs_node.api.tokens import Role, revoke_token
from pacs_node.db.tables import ApiToken, AuditLog, Job, JobEvent, Result, Study
from pacs_node.domain import JobState, StudyStatus
from tests.unit.api.conftest import Node
from tests.unit.api.seed import (
    DESTINATION,
    T0,
    add_checked_jobs,
    add_job,
    add_outputs,
    add_study,
    seg_job,
)

PUBLIC = {"/healthz", "/readyz"}


def data_routes(node: Node) -> list[tuple[str, str]]:
    """(method, concrete path) of every documented route that serves data or acts."""
    spec = node.client.get("/openapi.json").json()
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "1", path))
        for path, operations in spec["paths"].items()
        if path not in PUBLIC
        for method in operations
    ]


def test_every_data_route_needs_a_valid_token_and_admin_routes_need_admin(node: Node) -> None:
    routes = data_routes(node)
    assert {path for _, path in routes} >= {
        "/api/jobs",
        "/api/jobs/1",
        "/api/jobs/1/overlay.png",
        "/api/jobs/1/retry",
        "/api/jobs/1/replay",
        "/api/studies/force-complete",
        "/api/stats",
        "/api/audit",
        "/api/node",
        "/api/jobs/1/feedback",
        "/api/jobs/1/findings",
        "/api/feedback/summary",
        "/metrics",
    }
    with node.sessions.begin() as session:
        revoke_token(session, "admin-token")
    for method, path in routes:
        missing = node.client.request(method, path)
        assert missing.status_code == 401, (method, path)
        assert missing.headers["www-authenticate"] == "Bearer"
        for secret in ("pn_not-a-token", node.secrets[Role.ADMIN]):  # unknown, revoked
            bad = node.client.request(method, path, headers={"Authorization": f"Bearer {secret}"})
            assert bad.status_code == 401, (method, path)
        viewer = node.client.request(method, path, headers=node.headers(Role.VIEWER))
        # Feedback is a review, not an admin action: viewers give it; and open viewer sessions.
        viewer_posts = ("/feedback", "/viewer-session")
        admin_only = (method == "POST" and not path.endswith(viewer_posts)) or path == "/api/audit"
        assert (viewer.status_code == 403) is admin_only, (method, path, viewer.status_code)
    with node.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditLog)) == 0


def test_tokens_are_stored_hashed_and_last_use_noted(node: Node) -> None:
    node.client.get("/api/jobs", headers=node.headers(Role.VIEWER)).raise_for_status()
    with node.sessions() as session:
        stored = {t.name: t for t in session.scalars(select(ApiToken))}
    assert node.secrets[Role.VIEWER] not in {t.token_sha256 for t in stored.values()}
    assert stored["viewer-token"].last_used_at is not None
    assert stored["admin-token"].last_used_at is None


def test_job_list_filters_and_pages_over_http(node: Node) -> None:
    with node.sessions.begin() as session:
        for n in range(5):
            state = JobState.FAILED if n % 2 else JobState.DONE
            add_job(session, add_study(session, n), state, created=T0.replace(hour=n))
    get = lambda **params: node.client.get(  # noqa: E731
        "/api/jobs", params=params, headers=node.headers()
    )
    failed = get(state="failed").json()
    assert [j["state"] for j in failed["items"]] == ["failed", "failed"]
    both = get(state=["failed", "done"], limit=3).json()
    assert len(both["items"]) == 3 and both["next_cursor"]
    rest = get(state=["failed", "done"], limit=3, cursor=both["next_cursor"]).json()
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None
    assert get(patient_id="PID0003").json()["items"][0]["accession_number"] == "ACC0003"
    assert (
        get(created_from="2026-03-01T02:00:00Z", created_to="2026-03-01T04:00:00Z").json()["items"][
            0
        ]["patient_id"]
        == "PID0003"
    )


REASONS = ("only 3 of 5 lumbar discs found", "low segmentation certainty (0.71)")


def test_jobs_show_the_quality_check_of_the_model(node: Node) -> None:
    with node.sessions.begin() as session:
        ids = add_checked_jobs(session, REASONS)
    items = node.client.get("/api/jobs", headers=node.headers()).json()["items"]
    verdicts = {j["id"]: (j["needs_review"], j["review_reasons"]) for j in items}
    assert verdicts == {
        ids[0]: (True, list(REASONS)),
        ids[1]: (False, []),
        ids[2]: (None, []),  # no model ran
    }
    detail = node.client.get(f"/api/jobs/{ids[0]}", headers=node.headers()).json()
    assert (detail["job"]["needs_review"], detail["job"]["review_reasons"]) == (True, list(REASONS))


@pytest.mark.parametrize(
    "params",
    [
        {"state": "lost"},
        {"created_from": "yesterday"},
        {"created_from": "2026-03-01T00:00:00"},  # no zone
        {"created_from": "2026-03-02T00:00:00Z", "created_to": "2026-03-01T00:00:00Z"},
        {"study_instance_uid": "not.a..uid"},
        {"cursor": "bogus"},
        {"limit": 0},
        {"limit": 501},
    ],
)
def test_invalid_filters_are_422_with_a_reason(node: Node, params: dict[str, object]) -> None:
    response = node.client.get("/api/jobs", params=params, headers=node.headers())
    assert response.status_code == 422
    assert response.json()["detail"]


def test_job_detail_and_unknown_job(node: Node) -> None:
    with node.sessions.begin() as session:
        job = add_job(session, add_study(session, 1), JobState.FAILED, created=T0, reason="boom")
        add_outputs(session, job)
        job_id = job.id
    detail = node.client.get(f"/api/jobs/{job_id}", headers=node.headers()).json()
    assert detail["job"]["id"] == job_id
    assert [r["kind"] for r in detail["results"]] == ["seg", "oru"]
    assert detail["hl7_acks"][0]["last_status"] == "AE"
    assert any(e["source"] == "job" and e["message"] == "boom" for e in detail["errors"])
    missing = node.client.get("/api/jobs/999999", headers=node.headers())
    assert missing.status_code == 404 and missing.json()["detail"] == "no job 999999"
    assert node.client.get("/api/jobs/abc", headers=node.headers()).status_code == 422


def test_retry_and_replay_over_http_are_audited_with_who_and_where(node: Node) -> None:
    with node.sessions.begin() as session:
        job_id = add_job(session, add_study(session, 1), JobState.FAILED, created=T0).id
        sent = add_job(session, add_study(session, 2), JobState.FAILED, created=T0)
        add_outputs(session, sent)
        sent_id = sent.id
    admin = node.headers(Role.ADMIN)
    retried = node.client.post(f"/api/jobs/{job_id}/retry", headers=admin)
    assert retried.status_code == 202, retried.text
    assert node.queue.enqueued == [(job_id, "queued")]
    again = node.client.post(f"/api/jobs/{job_id}/retry", headers=admin)
    assert again.status_code == 409 and "only a failed job" in again.json()["detail"]
    has_results = node.client.post(f"/api/jobs/{sent_id}/retry", headers=admin)
    assert has_results.status_code == 409 and "replay" in has_results.json()["detail"]
    with node.sessions.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None
        add_outputs(session, job)
    replayed = node.client.post(
        f"/api/jobs/{job_id}/replay", json={"destination": DESTINATION}, headers=admin
    )
    assert replayed.status_code == 202 and replayed.json()["detail"] == "1 deliveries pending"
    assert node.queue.delivery_woken == [(job_id, "queued")]  # on its way: state left alone
    for body, status in (
        ({"destination": "X@1.1.1.1:1"}, 409),
        ({"destination": ""}, 422),
        ({}, 422),
    ):
        assert (
            node.client.post(f"/api/jobs/{job_id}/replay", json=body, headers=admin).status_code
            == status
        )
    assert node.client.post("/api/jobs/424242/retry", headers=admin).status_code == 404
    audit = node.client.get("/api/audit", headers=admin).json()
    assert [(a["action"], a["actor"], a["remote_address"]) for a in audit] == [
        ("job.replay", "admin-token", "testclient"),
        ("job.retry", "admin-token", "testclient"),
    ]
    with node.sessions() as session:
        assert session.get(Job, job_id).state == "queued"  # type: ignore[union-attr]


def test_force_complete_over_http(node: Node) -> None:
    with node.sessions.begin() as session:
        study = add_study(session, 8)
        study.status = StudyStatus.RECEIVING.value
        uid, study_id = study.study_instance_uid, study.id
    admin = node.headers(Role.ADMIN)
    url = "/api/studies/force-complete"
    assert node.client.post(url, json={"study_instance_uid": uid}, headers=admin).status_code == 202
    with node.sessions() as session:
        assert session.get(Study, study_id).force_complete is True  # type: ignore[union-attr]
    unknown = {"study_instance_uid": "1.2.3.999"}
    assert node.client.post(url, json=unknown, headers=admin).status_code == 409
    bad = {"study_instance_uid": "1..2"}
    assert node.client.post(url, json=bad, headers=admin).status_code == 422
    with node.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditLog)) == 1


def test_overlay_png_of_a_seg_result(node: Node) -> None:
    job_id = seg_job(node.sessions, node.spool)
    response = node.client.get(f"/api/jobs/{job_id}/overlay.png", headers=node.headers())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content)).convert("RGB")
    assert min(image.size) >= 384
    pixels = np.asarray(image).astype(int)
    coloured = (pixels[..., 0] != pixels[..., 1]) | (pixels[..., 1] != pixels[..., 2])
    assert coloured.mean() > 0.05  # the segments are drawn in colour over a grey slice
    with node.sessions.begin() as session:
        path = session.scalars(select(Result.path).where(Result.job_id == job_id)).one()
        other = add_job(session, add_study(session, 1), JobState.DONE, created=T0).id
    no_seg = node.client.get(f"/api/jobs/{other}/overlay.png", headers=node.headers())
    assert no_seg.status_code == 404 and "no SEG" in no_seg.json()["detail"]
    (node.spool / path).unlink()
    gone = node.client.get(f"/api/jobs/{job_id}/overlay.png", headers=node.headers())
    assert gone.status_code == 404 and "not in the spool" in gone.json()["detail"]
    assert node.client.get("/api/jobs/5555/overlay.png", headers=node.headers()).status_code == 404


def test_health_and_readiness(node: Node) -> None:
    assert node.client.get("/healthz").json() == {"status": "alive"}
    ready = node.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert set(checks) == {"database", "broker", "spool", "model"}
    assert all(check["ok"] for check in checks.values())


def test_readiness_reports_a_failing_check(make_node: Callable[..., Node]) -> None:
    def broker_down() -> str:
        raise ConnectionError("connection refused")

    node = make_node(checks={"database": lambda: "reachable", "broker": broker_down})
    response = node.client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "ready": False,
        "checks": {
            "database": {"ok": True, "detail": "reachable"},
            "broker": {"ok": False, "detail": "ConnectionError: connection refused"},
        },
    }


def test_metrics_from_the_database(node: Node) -> None:
    with node.sessions.begin() as session:
        add_job(session, add_study(session, 1), JobState.QUEUED, created=T0)
        job = add_job(session, add_study(session, 2), JobState.DONE, created=T0)
        add_outputs(session, job)
    text = node.client.get("/metrics", headers=node.headers()).text
    assert 'pacs_node_jobs{state="queued"} 1.0' in text
    assert 'pacs_node_queue_depth{queue="jobs_queued"} 1.0' in text
    assert 'pacs_node_deliveries{channel="hl7",state="dead"} 1.0' in text
    assert "pacs_node_studies_completed_total 2.0" in text
    assert "PID0001" not in text and "1.2.826" not in text


def test_stats_over_http(node: Node) -> None:
    stats = node.client.get("/api/stats", params={"days": 3}, headers=node.headers()).json()
    assert len(stats["days"]) == 3 and set(stats) == {"counts_by_state", "queue_depth", "days"}
    assert node.client.get("/api/stats?days=0", headers=node.headers()).status_code == 422


def test_openapi_documents_routes_and_bearer_auth(node: Node) -> None:
    spec = node.client.get("/openapi.json").json()
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/retry", "/readyz"} <= set(
        spec["paths"]
    )
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    params = {p["name"] for p in spec["paths"]["/api/jobs"]["get"]["parameters"]}
    assert params >= {"state", "created_from", "patient_id", "accession_number", "cursor"}


def test_dashboard_is_served(node: Node) -> None:
    assert node.client.get("/", follow_redirects=False).headers["location"] == "/dashboard/"
    page = node.client.get("/dashboard/")
    assert page.status_code == 200 and "app.js" in page.text
    assert node.client.get("/dashboard/app.js").status_code == 200
    with node.sessions() as session:
        assert session.scalar(select(func.count()).select_from(JobEvent)) == 0


def test_api_server_serves_and_reports_a_taken_port(node: Node) -> None:
    first = ApiServer.start(node.client.app, "127.0.0.1", 0)  # type: ignore[arg-type]
    try:
        assert httpx.get(f"http://127.0.0.1:{first.port}/healthz").json() == {"status": "alive"}
        with pytest.raises(OSError, match="did not start"):
            ApiServer.start(node.client.app, "127.0.0.1", first.port)  # type: ignore[arg-type]
    finally:
        first.stop()
    assert not first.thread.is_alive()


def test_node_identity_is_shown_and_stays_the_same(node: Node) -> None:
    first = node.client.get("/api/node", headers=node.headers()).json()
    assert re.fullmatch(r"[0-9a-f]{32}", first["node_id"])
    assert first["ae_title"] == "LUMBAR_NODE" and first["software_version"]
    assert first["uid_root"] == "1.2.826.0.1.3680043.8.498."
    assert node.client.get("/api/node", headers=node.headers()).json() == first
