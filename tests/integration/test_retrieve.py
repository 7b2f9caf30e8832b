"""Retrieve on demand from a real PACS: Orthanc holds a study, the node asks for it (C-FIND, then
C-MOVE to its own AE title or C-GET) and analyses it on arrival.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.e2e.harness import make_random_checkpoint
from tests.helpers.node_process import NodeProcess, run_node
from tests.helpers.orthanc import ORTHANC, Orthanc, run_orthanc, wait_until
from tests.helpers.services import free_port
from worker.commands.phantom import write_phantom

pytestmark = [pytest.mark.integration, pytest.mark.slow]

if not ORTHANC.exists():
    pytest.skip("Orthanc is needed", allow_module_level=True)


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    with run_orthanc(tmp_path / "orthanc") as running:
        yield running


def pacs_node(node: NodeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a ``pacs-node`` command against the running node's database and settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACS_NODE_")}
    env.update(node.env)
    return subprocess.run(
        [sys.executable, "-m", "worker.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("method", ["move", "get"])
def test_a_study_retrieved_by_accession_is_analysed_and_records_who_asked(
    tmp_path: Path, orthanc: Orthanc, method: str
) -> None:
    checkpoint = make_random_checkpoint(tmp_path / "tiny.safetensors")
    study = write_phantom(43, tmp_path / "study", size="small")
    files = sorted(study.directory.rglob("*.dcm"))
    for path in files:
        orthanc.upload(path)
    suffix = "/get" if method == "get" else ""
    with run_node(
        tmp_path / "node",
        model=str(checkpoint),
        device="cpu",
        sources=f"pacs={orthanc.aet}@127.0.0.1:{orthanc.dicom_port}{suffix}",
        quiet_seconds="30",
        release_grace_seconds="1",
    ) as node:
        orthanc.declare_modality("node", "LUMBAR_NODE", node.port)
        missing = pacs_node(node, "retrieve", "--source", "pacs", "--accession", "NOSUCH")
        unknown = pacs_node(node, "retrieve", "--source", "other", "--accession", "PHA1")
        done = pacs_node(
            node, "retrieve", "--source", "pacs", "--accession", f"PHA{43:09d}", "--wait", "120"
        )
        assert done.returncode == 0, done.stdout + done.stderr + node.log.read_text()
        assert f"{len(files)} instance(s) sent" in done.stdout and "; job 1" in done.stdout

        def job_done() -> bool:
            return node.query("SELECT state FROM jobs") == [("done",)]

        wait_until(job_done, 300, f"the retrieved study analysed\n{node.log.read_text()}")
        again = pacs_node(
            node, "retrieve", "--source", "pacs", "--study-uid", study.study_instance_uid
        )
        jobs = node.query("SELECT trigger, requested_by FROM jobs")
        retrievals = node.query("SELECT purpose, state, completed, failed, job_id FROM retrievals")
        instances = node.query("SELECT count(*) FROM instances")
        audit = node.query("SELECT actor, action FROM audit_log")
    assert missing.returncode != 0 and "holds no such study" in missing.stderr
    assert unknown.returncode != 0 and "no source named 'other'" in unknown.stderr
    assert again.returncode == 0 and "already held, job 1" in again.stdout, again.stdout
    assert jobs == [("retrieved", f"cli:{getpass.getuser()}")]
    assert retrievals == [
        ("on_demand", "retrieved", len(files), 0, 1),
        ("on_demand", "retrieved", len(files), 0, 1),
    ]
    assert instances == [(len(files),)]
    assert [action for _, action in audit] == ["retrieve", "retrieve"]


def token(node: NodeProcess, name: str, role: str) -> str:
    created = pacs_node(node, "tokens", "create", name, "--role", role)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def test_retrieve_from_the_api_is_audited_and_refuses_what_it_cannot_do(
    tmp_path: Path, orthanc: Orthanc
) -> None:
    checkpoint = make_random_checkpoint(tmp_path / "tiny.safetensors")
    study = write_phantom(44, tmp_path / "study", size="small")
    for path in sorted(study.directory.rglob("*.dcm")):
        orthanc.upload(path)
    closed = free_port()
    with run_node(
        tmp_path / "node",
        model=str(checkpoint),
        device="cpu",
        sources=f"pacs={orthanc.aet}@127.0.0.1:{orthanc.dicom_port},down=PACS@127.0.0.1:{closed}",
        quiet_seconds="30",
        release_grace_seconds="1",
    ) as node:
        orthanc.declare_modality("node", "LUMBAR_NODE", node.port)
        admin = {"Authorization": f"Bearer {token(node, 'ris-admin', 'admin')}"}
        viewer = {"Authorization": f"Bearer {token(node, 'reader', 'viewer')}"}
        with httpx.Client(base_url=node.api_url, timeout=120, trust_env=False) as api:
            ask = {"source": "pacs", "study_instance_uid": study.study_instance_uid}
            assert api.post("/api/retrievals", json=ask, headers=viewer).status_code == 403
            refusals = {
                "unknown source": api.post(
                    "/api/retrievals", json={**ask, "source": "nope"}, headers=admin
                ),
                "both keys": api.post(
                    "/api/retrievals", json={**ask, "accession_number": "A1"}, headers=admin
                ),
                "no such study": api.post(
                    "/api/retrievals",
                    json={"source": "pacs", "accession_number": "NOSUCH"},
                    headers=admin,
                ),
                "source down": api.post(
                    "/api/retrievals", json={**ask, "source": "down"}, headers=admin
                ),
            }
            accepted = api.post("/api/retrievals", json=ask, headers=admin)
            assert accepted.status_code == 202, accepted.text
            (retrieval_id,) = accepted.json()["retrievals"]

            def retrieval() -> dict[str, object]:
                answer = api.get(f"/api/retrievals/{retrieval_id}", headers=viewer)
                assert answer.status_code == 200
                return dict(answer.json())

            wait_until(lambda: retrieval()["job_id"] is not None, 120, "the job of the retrieval")
            job = api.get(f"/api/jobs/{retrieval()['job_id']}", headers=viewer).json()["job"]
            listed = api.get("/api/retrievals", headers=viewer).json()
        audit = node.query("SELECT actor, action, target FROM audit_log WHERE action = 'retrieve'")
    assert {name: r.status_code for name, r in refusals.items()} == {
        "unknown source": 422,
        "both keys": 422,
        "no such study": 404,
        "source down": 502,
    }
    assert (job["trigger"], job["requested_by"]) == ("retrieved", "ris-admin")
    assert [r["id"] for r in listed] == [retrieval_id]
    assert audit == [("ris-admin", "retrieve", f"retrieval:{retrieval_id}")]
    assert study.study_instance_uid not in node.log.read_text()
