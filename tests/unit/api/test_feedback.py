"""Feedback over HTTP: a viewer reviews a job's findings and segmentation; validated, audited,
kept across job versions, summed per model version and exported as metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.api.tokens import Role
from pacs_node.db.tables import AuditLog, Instance, Job, Result, Series
from pacs_node.domain import JobState
from pacs_node.metrics import NodeMetrics
from pacs_node.results.inputs import (
    AlgorithmInfo,
    LevelFinding,
    LevelRegion,
    RegionShape,
    ResultContext,
)
from pacs_node.results.sr import build_sr
from tests.unit.api.conftest import Node
from tests.unit.api.seed import T0, add_job, seg_job
from tests.unit.api.test_metrics import samples

CALLS = {"L4/L5": {"disc_bulge": True, "schmorl_node": False}}
BULGE = {"level": "L4/L5", "abnormality": "disc_bulge"}


def reviewable_job(node: Node) -> int:
    """A done job with its SEG and an SR (the calls in :data:`CALLS`) in the node's spool."""
    job_id = seg_job(node.sessions, node.spool)
    add_sr(node.sessions, node.spool, job_id)
    return job_id


def add_sr(sessions: sessionmaker[Session], spool: Path, job_id: int) -> None:
    """Give :func:`seed.seg_job`'s job an SR with the calls in :data:`CALLS`, and its model's
    checkpoint and config."""
    with sessions.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.checkpoint_sha256, job.config_hash = "ab" * 32, "cfg"
        paths = session.scalars(
            select(Instance.path)
            .join(Series, Series.id == Instance.series_id)
            .where(Series.study_id == job.study_id)
            .order_by(Instance.id)
        ).all()
        images = [pydicom.dcmread(spool / path) for path in paths]
        findings = [
            LevelFinding(level, key, 1.0 if present else 0.0, present)
            for level, calls in CALLS.items()
            for key, present in calls.items()
        ]
        region = LevelRegion(
            "L4/L5",
            images[2].SOPInstanceUID,
            images[2].SOPClassUID,
            ((9.5, 9.5),),
            RegionShape.POINT,
        )
        sr = build_sr(
            images,
            findings,
            [],
            algorithm=AlgorithmInfo("lumbarclip", "0.1", "ab" * 32, "cfg"),
            context=ResultContext(
                job_key="seed/1", created=T0.replace(tzinfo=None), software_version="0"
            ),
            regions=[region],
        )
        relative = f"results/{job_id}/sr.dcm"
        sr.save_as(spool / relative)
        session.add(
            Result(
                job_id=job_id,
                kind="sr",
                sop_instance_uid=sr.SOPInstanceUID,
                path=relative,
                sha256="3" * 64,
                size_bytes=1,
            )
        )


def post(node: Node, job_id: int, role: Role = Role.VIEWER, **body: Any) -> Any:
    return node.client.post(f"/api/jobs/{job_id}/feedback", json=body, headers=node.headers(role))


def test_a_viewer_reviews_findings_and_the_segmentation(node: Node) -> None:
    job_id = reviewable_job(node)
    findings = node.client.get(f"/api/jobs/{job_id}/findings", headers=node.headers()).json()
    assert findings == {"job_id": job_id, "findings": CALLS, "segmentation": True}
    accepted = post(node, job_id, items=[BULGE, {"segmentation": True}], verdict="accept")
    assert accepted.status_code == 201, accepted.text
    amended = post(
        node,
        job_id,
        items=[{"level": "L4/L5", "abnormality": "schmorl_node"}],
        verdict="amend",
        amended_value="present",
        comment="small one at the upper endplate",
    )
    assert amended.status_code == 201
    entries = node.client.get(f"/api/jobs/{job_id}/feedback", headers=node.headers()).json()
    assert [(e["subject"], e["abnormality"], e["verdict"], e["given_by"]) for e in entries] == [
        ("finding", "disc_bulge", "accept", "viewer-token"),
        ("segmentation", None, "accept", "viewer-token"),
        ("finding", "schmorl_node", "amend", "viewer-token"),
    ]
    assert entries[2]["amended_value"] == "present"
    assert entries[0]["model_name"] == "lumbarclip-atto" and entries[0]["job_version"] == 1
    with node.sessions() as session:
        audit = session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
    assert [(a.actor, a.action, a.target) for a in audit] == [
        ("viewer-token", "feedback", f"job:{job_id}")
    ] * 2
    assert "endplate" not in str([a.details for a in audit])
    (model,) = node.client.get("/api/feedback/summary", headers=node.headers()).json()
    assert (model["model_name"], model["checkpoint_sha256"]) == ("lumbarclip-atto", "ab" * 32)
    assert model["findings"] == {
        "reviewed": 2,
        "accepted": 1,
        "rejected": 0,
        "amended": 1,
        "agreement_rate": 0.5,
    }
    assert model["segmentation"]["agreement_rate"] == 1.0
    assert model["by_abnormality"]["disc_bulge"]["accepted"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"items": [{"level": "L9/L10", "abnormality": "disc_bulge"}], "verdict": "accept"},
        {"items": [{"level": "L4/L5", "abnormality": "fracture"}], "verdict": "accept"},
        {"items": [{"level": "L4/L5"}], "verdict": "accept"},
        {"items": [{**BULGE, "segmentation": True}], "verdict": "accept"},
        {"items": [BULGE], "verdict": "maybe"},
        {"items": [], "verdict": "accept"},
        {"items": [BULGE], "verdict": "amend"},
        {"items": [BULGE], "verdict": "amend", "amended_value": "perhaps"},
        {"items": [BULGE], "verdict": "reject", "comment": "x" * 1001},
    ],
)
def test_malformed_feedback_is_422(node: Node, body: dict[str, Any]) -> None:
    job_id = reviewable_job(node)
    assert post(node, job_id, **body).status_code == 422
    with node.sessions() as session:
        assert session.scalars(select(AuditLog)).all() == []


def test_a_job_without_results_is_409_and_an_unknown_one_404(node: Node) -> None:
    with node.sessions.begin() as session:
        reviewed = session.get(Job, reviewable_job(node))
        assert reviewed is not None
        skipped = add_job(session, reviewed.study, JobState.SKIPPED, created=T0).id
    assert post(node, skipped, items=[BULGE], verdict="accept").status_code == 409
    assert post(node, 999_999, items=[BULGE], verdict="accept").status_code == 404
    assert node.client.get("/api/jobs/999999/feedback", headers=node.headers()).status_code == 404
    assert node.client.get("/api/jobs/999999/findings", headers=node.headers()).status_code == 404
    empty = node.client.get(f"/api/jobs/{skipped}/findings", headers=node.headers()).json()
    assert (empty["findings"], empty["segmentation"]) == ({}, False)


def test_viewers_and_admins_may_give_feedback_senders_may_not(node: Node) -> None:
    job_id = reviewable_job(node)
    assert post(node, job_id, Role.SENDER, items=[BULGE], verdict="accept").status_code == 403
    assert post(node, job_id, Role.ADMIN, items=[BULGE], verdict="reject").status_code == 201
    assert node.client.post(f"/api/jobs/{job_id}/feedback", json={}).status_code == 401
    summary = node.client.get("/api/feedback/summary", headers=node.headers(Role.SENDER))
    assert summary.status_code == 403


def test_a_newer_version_shows_the_feedback_given_on_the_earlier_one(node: Node) -> None:
    first = reviewable_job(node)
    post(node, first, items=[BULGE], verdict="reject")
    with node.sessions.begin() as session:
        job = session.get(Job, first)
        assert job is not None
        job.state = JobState.SUPERSEDED.value
        second = add_job(session, job.study, JobState.DONE, created=T0).id
    entries = node.client.get(f"/api/jobs/{second}/feedback", headers=node.headers()).json()
    assert [(e["job_id"], e["job_version"], e["verdict"]) for e in entries] == [
        (first, 1, "reject")
    ]


def test_feedback_metrics_by_model_version(node: Node) -> None:
    job_id = reviewable_job(node)
    post(node, job_id, items=[BULGE], verdict="accept")
    post(node, job_id, items=[{"segmentation": True}], verdict="amend", amended_value="L5 short")
    values = samples(NodeMetrics(node.sessions))
    model = (("checkpoint", "ab" * 6), ("config", "cfg"), ("model", "lumbarclip-atto"))
    given = "pacs_node_feedback_total"
    assert values[(given, (*model, ("subject", "finding"), ("verdict", "accept")))] == 1
    assert values[(given, (*model, ("subject", "segmentation"), ("verdict", "amend")))] == 1
    rate = "pacs_node_feedback_agreement_ratio"
    assert values[(rate, (*model, ("subject", "finding")))] == 1.0
    assert values[(rate, (*model, ("subject", "segmentation")))] == 0.0
