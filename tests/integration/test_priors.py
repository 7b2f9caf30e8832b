"""Priors against a real PACS: Orthanc holds the patient's earlier lumbar MRI; a new study pushed
to the node is compared with it. The node finds the prior (C-FIND), fetches it (C-MOVE), analyses
it as a job of its own that sends nothing, and reports per level what changed, in the SR it
stores in Orthanc and in the ORU.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pydicom
import pytest
from hl7apy.parser import parse_message
from pydicom import Dataset

from bench.e2e.harness import DCMTK_ENV, STORESCU
from pacs_node.results import codes
from pacs_node.results.sr_findings import levels_from_sr
from tests.helpers.node_process import NodeProcess, run_node
from tests.helpers.orthanc import ORTHANC, run_orthanc, wait_until
from worker.commands.phantom import write_prior_pair

pytestmark = [pytest.mark.integration, pytest.mark.slow]

if not ORTHANC.exists():
    pytest.skip("Orthanc is needed", allow_module_level=True)

CHANGE_BY_CODE = {code.value: key for key, code in codes.CHANGE_CODES.items()}
CHANGE_VALUE_BY_CODE = {code.value: key for key, code in codes.CHANGE_VALUES.items()}


def push(node: NodeProcess, folder: Path) -> None:
    files = sorted(str(p) for p in folder.rglob("*.dcm"))
    sent = subprocess.run(
        [STORESCU, "-aet", "MODALITY", "-aec", "LUMBAR_NODE", "127.0.0.1", str(node.port), *files],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr


def coded_items(items: Sequence[Dataset]) -> Iterator[tuple[str, str, str]]:
    """(tracking identifier, concept name code, value code) of every coded item of every
    measurement group in an SR content tree, whichever container holds the group."""
    for item in items:
        if item.ValueType != "CONTAINER":
            continue
        children = item.get("ContentSequence", [])
        level = next(
            (
                c.TextValue
                for c in children
                if c.ValueType == "TEXT" and c.ConceptNameCodeSequence[0].CodeValue == "112039"
            ),
            None,
        )
        if level is not None:
            for c in children:
                if c.ValueType == "CODE":
                    yield (
                        level,
                        c.ConceptNameCodeSequence[0].CodeValue,
                        c.ConceptCodeSequence[0].CodeValue,
                    )
        yield from coded_items(children)


def expected_changes(now: dict[str, dict[str, bool]], before: dict[str, dict[str, bool]]):
    """What the comparison must say, from the two SRs' own calls."""
    expected = {}
    for level, calls in now.items():
        for key, present in calls.items():
            was = before.get(level, {}).get(key)
            if level in before and was is not None and (present or was):
                expected[(level, key)] = (
                    "unchanged" if present and was else "new" if present else "resolved"
                )
    return expected


def test_a_new_study_is_compared_with_the_prior_fetched_from_the_pacs(tmp_path: Path) -> None:
    """The shipped model: the prior has no finding, the current one has findings added."""
    prior, current = write_prior_pair(45, tmp_path / "pair")
    with run_orthanc(tmp_path / "orthanc") as orthanc:
        for path in sorted(prior.directory.rglob("*.dcm")):
            orthanc.upload(path)
        source = f"pacs={orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"
        with run_node(
            tmp_path / "node",
            device="cpu",
            sources=source,
            priors="true",
            destinations=f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}",
            quiet_seconds="30",
            release_grace_seconds="1",
        ) as node:
            orthanc.declare_modality("node", "LUMBAR_NODE", node.port)
            push(node, current.directory)

            def both_done() -> bool:
                return [s for (s,) in node.query("SELECT state FROM jobs")] == ["done", "done"]

            wait_until(both_done, 400, f"current and prior analysed\n{node.log.read_text()}")

            def results_in_orthanc() -> bool:
                return {"SEG", "SR"} <= set(orthanc.series_modalities())

            wait_until(results_in_orthanc, 120, "SEG and SR in Orthanc")
            jobs = node.query(
                "SELECT j.id, s.study_instance_uid, j.trigger, j.prior_job_id, j.reason "
                "FROM jobs j JOIN studies s ON s.id = j.study_id ORDER BY j.id",
            )
            deliveries = node.query("SELECT job_id, count(*) FROM deliveries GROUP BY job_id")
            retrievals = node.query("SELECT purpose, state, for_job_id, job_id FROM retrievals")
            results = dict(node.query("SELECT job_id || '/' || kind, path FROM results"))
            events = [m for (m,) in node.query("SELECT message FROM job_events")]
            spool = node.log.parent / "spool"
        result_studies = [
            orthanc.get_json(f"/studies/{series['ParentStudy']}")["MainDicomTags"]
            for series in orthanc.get_json("/series?expand")
            if series["MainDicomTags"]["Modality"] in ("SEG", "SR")
        ]
    by_study = {
        uid: (job_id, trigger, prior_job, reason)
        for job_id, uid, trigger, prior_job, reason in jobs
    }
    current_job, current_trigger, compared_with, _ = by_study[current.study_instance_uid]
    prior_job, prior_trigger, _, prior_reason = by_study[prior.study_instance_uid]
    assert (current_trigger, prior_trigger) != (None, None)
    assert prior_trigger == "prior" and compared_with == prior_job
    assert "results are kept, not sent" in str(prior_reason)
    assert retrievals == [("prior", "retrieved", current_job, prior_job)]
    assert dict(deliveries) == {current_job: 2}, "the prior's results went nowhere"
    assert f"prior: compared with job {prior_job}" in events
    # Orthanc holds the node's SEG and SR of the current study only.
    assert [study["StudyInstanceUID"] for study in result_studies] == [
        current.study_instance_uid
    ] * 2
    # The SR compares level by level exactly as the two reports' own calls say.
    current_sr = spool / str(results[f"{current_job}/sr"])
    prior_sr = spool / str(results[f"{prior_job}/sr"])
    expected = expected_changes(
        levels_from_sr(current_sr).findings, levels_from_sr(prior_sr).findings
    )
    encoded = {
        (level, CHANGE_BY_CODE[name]): CHANGE_VALUE_BY_CODE[value]
        for level, name, value in coded_items(pydicom.dcmread(current_sr).ContentSequence)
        if name in CHANGE_BY_CODE
    }
    assert encoded == expected and encoded, (encoded, expected)
    evidence = pydicom.dcmread(current_sr).PertinentOtherEvidenceSequence[0]
    assert evidence.StudyInstanceUID == prior.study_instance_uid
    # The ORU names the prior and carries the same changes.
    oru = parse_message(
        (spool / str(results[f"{current_job}/oru"])).read_text().replace("\n", "\r")
    )
    observations = [
        o.obx for o in oru.oru_r01_patient_result.oru_r01_order_observation.oru_r01_observation
    ]
    prior_rows = [
        o for o in observations if o.obx_3.obx_3_1.value == codes.PRIOR_STUDY_INSTANCE_UID.value
    ]
    assert prior_rows and prior_rows[0].obx_5.value == prior.study_instance_uid
    change_rows = {
        (o.obx_4.value, CHANGE_BY_CODE[o.obx_3.obx_3_1.value]): CHANGE_VALUE_BY_CODE[
            o.obx_5.obx_5_1.value
        ]
        for o in observations
        if o.obx_3.obx_3_1.value in CHANGE_BY_CODE
    }
    assert change_rows == expected
