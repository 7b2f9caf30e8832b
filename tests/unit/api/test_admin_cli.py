"""``pacs-node jobs`` and ``pacs-node tokens``: the API's data and actions, from a shell."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from sqlalchemy import select

from pacs_node.api.tokens import Role
from pacs_node.db.tables import ApiToken, AuditLog, Job
from pacs_node.domain import JobState
from tests.unit.api.conftest import Node
from tests.unit.api.seed import (
    DESTINATION,
    T0,
    add_checked_jobs,
    add_job,
    add_outputs,
    add_study,
)
from worker.main import main

Cli = Callable[..., tuple[int, str, str]]
REASONS = ("sacrum not in view", "level names uncertain (0.82 agreement)")


@pytest.fixture
def cli(node: Node, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``pacs-node ARGS`` against the node's database; return (exit code, stdout, stderr)."""
    monkeypatch.setenv("PACS_NODE_DATABASE_URL", node.settings.database_url)
    monkeypatch.setenv("PACS_NODE_SPOOL_DIR", str(node.spool))

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def seed(node: Node) -> int:
    with node.sessions.begin() as session:
        for n in range(4):
            add_job(session, add_study(session, n), JobState.DONE, created=T0.replace(hour=n))
        job = add_job(
            session,
            add_study(session, 9),
            JobState.FAILED,
            created=T0,
            reason="boom",
            review_reasons=REASONS,
        )
        add_outputs(session, job)
        return job.id


def test_jobs_json_is_what_the_api_returns(node: Node, cli: Cli) -> None:
    job_id = seed(node)
    headers = node.headers()
    for args, path in (
        (("jobs", "list", "--state", "done", "--limit", "2"), "/api/jobs?state=done&limit=2"),
        (("jobs", "list", "--accession", "ACC0009"), "/api/jobs?accession_number=ACC0009"),
        (("jobs", "show", str(job_id)), f"/api/jobs/{job_id}"),
        (("jobs", "stats", "--days", "5"), "/api/stats?days=5"),
    ):
        code, out, err = cli(*args, "--json")
        assert code == 0, err
        assert json.loads(out) == node.client.get(path, headers=headers).json(), args


def test_jobs_text_output_and_paging(node: Node, cli: Cli) -> None:
    job_id = seed(node)
    code, out, _ = cli("jobs", "list", "--limit", "2")
    assert code == 0
    assert "more: --cursor " in out
    cursor = out.rsplit("--cursor ", 1)[1].strip()
    code, older, _ = cli("jobs", "list", "--limit", "2", "--cursor", cursor)
    assert code == 0 and "more:" in older
    code, out, _ = cli("jobs", "show", str(job_id))
    assert f"job {job_id} version 1: failed (boom)" in out
    assert "quality check: low confidence: review\n  - sacrum not in view\n  - level names" in out
    assert "error: job: boom" in out and f"-> {DESTINATION}: sent" in out
    code, out, _ = cli("jobs", "stats", "--days", "2")
    assert code == 0 and "done=4" in out and "failed=1" in out


def test_jobs_list_marks_the_jobs_that_need_review_with_their_reasons(node: Node, cli: Cli) -> None:
    with node.sessions.begin() as session:
        add_checked_jobs(session, REASONS)
    code, out, _ = cli("jobs", "list")
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split() == ["job", "state", "created", "(UTC)", "AE", "check", "model"]
    # Newest first: no model ran, passed, then the one that needs review and its reasons.
    assert [line.split()[5] for line in lines[:3]] == ["-", "passed", "review"]
    assert lines[3].strip() == (
        "low confidence: review: sacrum not in view; level names uncertain (0.82 agreement)"
    )
    assert len(lines) == 4


def test_jobs_retry_and_replay_are_audited_as_the_cli_user(node: Node, cli: Cli) -> None:
    job_id = seed(node)  # failed sending its results
    with node.sessions.begin() as session:
        study = add_study(session, 10)
        unsent = add_job(session, study, JobState.FAILED, created=T0, reason="model crashed").id
    code, out, err = cli("jobs", "retry", str(unsent))
    assert code == 0, err
    assert out == f"retry job:{unsent}: queued\n"
    code, _, err = cli("jobs", "retry", str(unsent))
    assert code == 2 and "only a failed job can be retried" in err
    code, _, err = cli("jobs", "retry", str(job_id))
    assert code == 2 and "replay them instead" in err
    code, out, err = cli("jobs", "replay", str(job_id), DESTINATION, "--json")
    assert code == 0, err
    assert json.loads(out)["detail"] == "1 deliveries pending"
    with node.sessions() as session:
        assert session.get(Job, job_id).state == "delivering"  # type: ignore[union-attr]
        audit = session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
    assert [(a.action, a.remote_address) for a in audit] == [
        ("job.retry", "local"),
        ("job.replay", "local"),
    ]
    assert all(a.actor.startswith("cli:") for a in audit)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("jobs", "show", "424242"), "no job 424242"),
        (("jobs", "list", "--from", "2026-01-01T00:00:00"), "time zone"),
        (("jobs", "list", "--cursor", "nope"), "invalid cursor"),
        (("jobs", "replay", "1", "X@1.1.1.1:1"), "no job 1"),
    ],
)
def test_bad_input_exits_2_with_a_reason(cli: Cli, args: tuple[str, ...], message: str) -> None:
    code, _, err = cli(*args)
    assert code == 2 and message in err


def test_tokens_create_list_revoke(node: Node, cli: Cli) -> None:
    code, out, _ = cli("tokens", "create", "ops-dashboard", "--role", "admin")
    assert code == 0
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("pn_")
    auth = {"Authorization": f"Bearer {secret}"}
    assert node.client.get("/api/audit", headers=auth).status_code == 200
    code, _, err = cli("tokens", "create", "ops-dashboard")
    assert code == 2 and "exists" in err
    code, out, _ = cli("tokens", "list", "--json")
    listed = {t["name"]: t for t in json.loads(out)}
    assert listed["ops-dashboard"]["role"] == Role.ADMIN and "token_sha256" not in out
    assert secret not in out
    code, out, _ = cli("tokens", "revoke", "ops-dashboard")
    assert code == 0 and node.client.get("/api/audit", headers=auth).status_code == 401
    code, _, err = cli("tokens", "revoke", "ops-dashboard")
    assert code == 2 and "no active token" in err
    code, out, _ = cli("tokens", "list")
    assert "ops-dashboard" in out and "revoked" in out
    with node.sessions() as session:
        actions = session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
        assert session.scalar(select(ApiToken).where(ApiToken.name == "ops-dashboard")) is not None
    assert actions == ["token.create", "token.revoke"]
