"""A real PACS that forwards everything: Orthanc with the auto-routing rule sites write first.

Orthanc sends every stable study to the node, the node's own SEG and SR included once it has
stored them. The node must analyse the study once: its results coming back are stored as its own
results, never a new job version (the loop guard).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.e2e.harness import make_random_checkpoint
from tests.helpers.node_process import run_node
from tests.helpers.orthanc import AUTO_ROUTE_LUA, ORTHANC, Orthanc, run_orthanc, wait_until
from worker.commands.phantom import write_phantom

pytestmark = [pytest.mark.integration, pytest.mark.slow]

if not ORTHANC.exists():
    pytest.skip("Orthanc is needed", allow_module_level=True)

WATCH_SECONDS = 60
"""How long the node and Orthanc are watched once the results went round once."""


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    with run_orthanc(tmp_path / "orthanc", stable_age=2, lua=AUTO_ROUTE_LUA) as running:
        yield running


def test_results_forwarded_back_by_the_pacs_are_not_analysed_again(
    tmp_path: Path, orthanc: Orthanc
) -> None:
    checkpoint = make_random_checkpoint(tmp_path / "tiny.safetensors")
    study = write_phantom(41, tmp_path / "study", size="small")
    with run_node(
        tmp_path / "node",
        model=str(checkpoint),
        device="cpu",
        destinations=f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}",
        quiet_seconds="5",
        release_grace_seconds="1",
    ) as node:
        orthanc.declare_modality("node", "LUMBAR_NODE", node.port)
        for path in sorted(study.directory.rglob("*.dcm")):
            orthanc.upload(path)
        source_modalities = orthanc.series_modalities()

        def seg_and_sr_in_orthanc() -> bool:
            return {"SEG", "SR"} <= set(orthanc.series_modalities())

        wait_until(seg_and_sr_in_orthanc, 300, f"SEG and SR in Orthanc\n{node.log.read_text()}")

        def results_came_back() -> bool:
            rows = node.query(
                "SELECT count(*) FROM instances i JOIN series s ON s.id = i.series_id "
                "WHERE s.origin = 'own_result'",
            )
            return rows[0][0] == 2

        # The rule forwards the study again once the SEG and SR made it unstable and stable.
        wait_until(results_came_back, 120, f"the results back at the node\n{orthanc.log_tail()}")
        deadline = time.monotonic() + WATCH_SECONDS
        while time.monotonic() < deadline:
            modalities = orthanc.series_modalities()
            assert modalities.count("SEG") == 1 and modalities.count("SR") == 1, modalities
            time.sleep(1)
        jobs = node.query("SELECT version, state FROM jobs")
        origins = node.query("SELECT origin, count(*) FROM series GROUP BY origin")
        log = node.log.read_text()
    assert sorted(orthanc.series_modalities()) == sorted([*source_modalities, "SEG", "SR"])
    assert jobs == [(1, "done")], log
    assert dict(origins) == {"source": len(source_modalities), "own_result": 2}
    assert "own results sent back, stored (no analysis)" in log
