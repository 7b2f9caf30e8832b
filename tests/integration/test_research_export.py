"""A research export of a study the real node analysed: a canary study pushed with DCMTK
``storescu`` to ``pacs-node serve`` (embedded worker, a tiny random checkpoint of the real model),
then ``pacs-node export`` as a process. Nothing identifying survives, every reference resolves,
highdicom and dciodvfy accept the SEG and SR, training reads the export, and it is audited."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import highdicom as hd
import pytest

from bench.e2e.harness import NODE, STORESCP, STORESCU, make_random_checkpoint, run_stack
from models.labels import load_label_scheme
from tests.helpers.canary_study import (
    assert_nothing_identifying,
    assert_references_resolve,
    canary_strings,
    instance_uids,
    write_canary_study,
)
from worker.dicom_dataset import load_dicom_folder

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DCIODVFY = "/usr/bin/dciodvfy"
if not all(Path(tool).exists() for tool in (STORESCU, STORESCP, DCIODVFY)):
    pytest.skip("DCMTK and dicom3tools are needed", allow_module_level=True)


def iod_errors(path: Path) -> set[str]:
    """dciodvfy's error lines for a file."""
    checked = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return {line for line in checked.stderr.splitlines() if line.startswith("Error")}


def test_a_study_the_node_analysed_exports_de_identified_and_trainable(tmp_path: Path) -> None:
    study = write_canary_study(61, tmp_path / "study")
    checkpoint = make_random_checkpoint(tmp_path / "tiny.safetensors")
    with run_stack(
        tmp_path / "stack",
        database_url=f"sqlite:///{tmp_path}/node.db",
        broker_url="embedded",
        checkpoint=checkpoint,
    ) as stack:
        stack.push(study.directory)
        ((_, state, _),) = stack.wait_jobs(["done", "failed"])
        assert state == "done", stack.logs()
        out = tmp_path / "export"
        exported = subprocess.run(
            [*NODE, "export", "--since", "2000-01-01", "--out", str(out)],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert exported.returncode == 0, exported.stderr
        results = dict(stack.query("SELECT kind, path FROM results"))
        audit = stack.query("SELECT actor, details FROM audit_log WHERE action = 'export'")
    originals = {kind: tmp_path / "stack" / "spool" / path for kind, path in results.items()}
    sources = sorted(study.directory.rglob("*.dcm"))
    forbidden = [*canary_strings(), *instance_uids([*sources, originals["seg"], originals["sr"]])]
    assert_nothing_identifying(out, forbidden)
    for line in (exported.stdout + exported.stderr).splitlines():
        assert not [value for value in forbidden if value in line], line

    (entry,) = json.loads((out / "manifest.json").read_text())["studies"]
    folder = out / entry["folder"]
    assert_references_resolve(folder)
    assert hd.seg.segread(folder / "seg.dcm").StudyInstanceUID == entry["study_instance_uid"]
    assert hd.sr.srread(folder / "sr.dcm").StudyInstanceUID == entry["study_instance_uid"]
    for kind in ("seg", "sr"):
        assert iod_errors(folder / f"{kind}.dcm") <= iod_errors(originals[kind]), kind
    (sample,) = load_dicom_folder(out, load_label_scheme())
    assert sample.study_id == entry["study_instance_uid"] and sample.labels is not None
    ((actor, details),) = audit
    assert str(actor).startswith("cli:") and json.loads(str(details))["studies"] == 1
