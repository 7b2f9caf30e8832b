"""``pacs-node demo --size small``: study in, SEG and SR back at the PACS, ORU acknowledged.

Runs the real command in its own process. It uses the shipped checkpoint when there is one,
otherwise a random-weight checkpoint of the real network (``PACS_NODE_MODEL``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from bench.e2e.harness import make_random_checkpoint
from models.inference import DEFAULT_CHECKPOINT
from models.labels import load_label_scheme
from pacs_node.results.sr_findings import findings_from_sr
from worker.demo_report import compare_findings
from worker.phantom.truth import read_truth

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
DEMO = [sys.executable, "-m", "worker.main", "demo"]


def _env(model: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACS_NODE_")}
    env |= {"HF_HUB_OFFLINE": "1", "PACS_NODE_DEVICE": "cpu"}
    if model is not None:
        env["PACS_NODE_MODEL"] = str(model)
    return env


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """None (the shipped checkpoint) when it exists, else a tiny random checkpoint."""
    if DEFAULT_CHECKPOINT.is_file():
        return None
    return make_random_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def test_demo_round_trip(tmp_path: Path, model: Path | None) -> None:
    keep = tmp_path / "demo"
    run = subprocess.run(
        [*DEMO, "--size", "small", "--keep", str(keep), "--timeout", "240"],
        env=_env(model),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    for check in (
        "job done",
        "SEG received by the PACS",
        "SR received by the PACS",
        "ORU^R01 received and acknowledged by the RIS",
    ):
        assert f"[ok] {check}" in out
    # Progress was shown, through to the final state.
    assert re.search(r"\] job \d+: done", out)
    # What the PACS holds is exactly one SEG and one SR of the pushed study.
    truth = read_truth(keep / "study")
    received = sorted((keep / "pacs").glob("*.dcm"))
    classes = {}
    for path in received:
        dataset = pydicom.dcmread(path)
        assert dataset.StudyInstanceUID == truth["study_instance_uid"]
        classes[str(dataset.SOPClassUID)] = path
    assert sorted(classes) == sorted([SEG_CLASS, COMPREHENSIVE_3D_SR_CLASS])
    assert len(received) == 2
    # The SR reader finds every abnormality at every level it reports; the random checkpoint's
    # thresholds (2.0) call nothing present.
    findings = findings_from_sr(classes[COMPREHENSIVE_3D_SR_CLASS])
    keys = {a.key for a in load_label_scheme().abnormalities}
    assert findings and all(set(calls) == keys for calls in findings.values())
    if model is not None:
        assert not any(any(calls.values()) for calls in findings.values())
    # The summary names the returned files and an overlay PNG that exists.
    for path in received:
        assert str(path) in out
    overlay = keep / "overlay.png"
    assert overlay.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Findings are compared at levels of the truth, with an agreement line.
    # The grid's truth marks are the phantom's ground truth.
    header = re.search(r"^  level +(.+)$", out, flags=re.MULTILINE)
    assert header is not None
    keys = header.group(1).split()
    rows = re.findall(r"^  ([LTS]\d*/[LTS]\d*) +(.+)$", out, flags=re.MULTILINE)
    assert rows
    for level, cells in rows:
        marks = re.findall(r"([+-])/([+-])|n/a", cells)
        assert len(marks) == len(keys)
        for key, (_, truth_mark) in zip(keys, marks, strict=True):
            if truth_mark:
                assert (truth_mark == "+") == truth["findings"][level][key], (level, key)
    assert re.search(r"agreement \d+/\d+ calls", out)
    # Stage timings come from the job's events.
    assert re.search(r"results_ready\s+load [\d.]+ s, inference [\d.]+ s", out)


def test_demo_without_a_checkpoint_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "absent.safetensors"
    run = subprocess.run(
        [*DEMO, "--size", "small"],
        env=_env(missing),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 2
    assert run.stderr.strip() == (
        f"pacs-node demo: error: no model checkpoint at {missing} (set PACS_NODE_MODEL)"
    )


def test_demo_refuses_a_folder_that_is_not_empty(tmp_path: Path, model: Path | None) -> None:
    (tmp_path / "something").write_text("x")
    run = subprocess.run(
        [*DEMO, "--size", "small", "--keep", str(tmp_path)],
        env=_env(model),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 2
    assert "is not empty" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["something"]


def test_compare_findings_scores_shared_levels_and_keys() -> None:
    predicted = {
        "L4/L5": {"disc_bulge": True, "disc_protrusion": False},
        "L5/S1": {"disc_bulge": False, "schmorl_node": True},
        "T9/T10": {"disc_bulge": False},
    }
    truth = {
        "L4/L5": {"disc_bulge": True, "disc_protrusion": True, "disc_extrusion": False},
        "L5/S1": {"disc_bulge": False, "schmorl_node": False},
        "L3/L4": {"disc_bulge": True},
    }
    l4l5, l5s1 = compare_findings(predicted, truth)  # cranio-caudal; unshared levels left out
    assert (l4l5.level, l4l5.scored) == ("L4/L5", {"disc_bulge", "disc_protrusion"})
    assert (l4l5.predicted, l4l5.truth, l4l5.agree) == (
        {"disc_bulge"},
        {"disc_bulge", "disc_protrusion"},
        1,
    )
    assert (l5s1.predicted, l5s1.truth, l5s1.agree) == ({"schmorl_node"}, set(), 1)
