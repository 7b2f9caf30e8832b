"""No patient data, no UID and no forged line in anything the node writes, whatever it is sent.

A real ``pacs-node serve`` (embedded worker, tiny checkpoint) in text and in JSON log format gets
a well-formed study carrying canary names, IDs and accession number, which it analyses and
delivers (DCMTK storescp as the PACS, an MLLP receiver as the RIS), then malformed input (UID
elements whose corrupted length swallows the names and numbers after them, empty pixel data, an
overlong UID in the command, a wrong called AE title, AE titles with line breaks and terminal
escapes) and over a thousand fuzzed C-STOREs of the canary study. Its whole output (stdout and
stderr, every logger and every library, warnings included) must then hold none of the canaries,
no UID, no escape character, and only well-formed records.
"""

from __future__ import annotations

import json
import random
import re
import socket
import sqlite3
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pynetdicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from bench.e2e.harness import DCMTK_ENV, STORESCU, Pacs, make_random_checkpoint
from pacs_node.hl7.receiver import MllpReceiver
from tests.helpers.fuzz import associate_rq, corrupt_length, file_meta_end, mutate
from tests.helpers.node_process import NodeProcess, run_node
from worker.commands.phantom import write_phantom

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CANARIES = {
    "PatientName": "CANARYNAME^ZEBRA",
    "PatientID": "CANARYPID77",
    "AccessionNumber": "CANARYACC1",
    "StudyDescription": "CANARYDESC",
    "InstitutionName": "CANARYHOSPITAL",
}
FUZZED_INPUTS = 1000
UID_LIKE = re.compile(r"\d+(?:\.\d+){4,}")
TEXT_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")
# Explicit VR little endian tags of elements a corrupt length can make swallow what follows.
SWALLOWING_TAGS = {
    "StudyInstanceUID": b"\x20\x00\x0d\x00UI",
    "SeriesInstanceUID": b"\x20\x00\x0e\x00UI",
    "SOPInstanceUID": b"\x08\x00\x18\x00UI",
    "SOPClassUID": b"\x08\x00\x16\x00UI",
    "StudyDate": b"\x08\x00\x20\x00DA",
    "Modality": b"\x08\x00\x60\x00CS",
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def canary_study(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A small phantom study whose patient, study and site attributes are canaries."""
    study = write_phantom(51, tmp_path_factory.mktemp("canary"), size="small")
    paths = sorted(study.directory.rglob("*.dcm"))
    for path in paths:
        ds = pydicom.dcmread(path)
        for keyword, value in CANARIES.items():
            setattr(ds, keyword, value)
        ds.save_as(path, enforce_file_format=True)
    return paths


@pytest.fixture(autouse=True)
def _send_files_as_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send files as they are on disk (not decoded and re-encoded by the SCU)."""
    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)


@pytest.fixture
def ris() -> Iterator[MllpReceiver]:
    receiver = MllpReceiver().start()
    yield receiver
    receiver.stop()


def client() -> AE:
    ae = AE(ae_title="LOGCHECK")
    ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae


def send_raw(port: int, data: bytes) -> None:
    """Send bytes on a fresh connection and read until the node answers or closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        try:
            while s.recv(65536):
                pass
        except (ConnectionResetError, TimeoutError):
            pass


def wait_for_job(node: NodeProcess, timeout: float = 300.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(node.log.parent / "node.db") as conn:
            row = conn.execute("SELECT state FROM jobs").fetchone()
        if row is not None and row[0] in ("done", "failed"):
            return str(row[0])
        time.sleep(0.5)
    raise TimeoutError(node.log.read_text()[-4000:])


def send_malformed(node: NodeProcess, canary_study: list[Path], tmp_path: Path) -> int:
    """Malformed input of every kind the node has met; returns how many inputs were sent."""
    rng = random.Random(7)
    sent = 0
    originals = [p.read_bytes() for p in canary_study]
    bad_file = tmp_path / "bad.dcm"
    assoc = client().associate("127.0.0.1", node.port, ae_title="LUMBAR_NODE")

    def store_file(data: bytes) -> None:
        nonlocal assoc, sent
        bad_file.write_bytes(data)
        if not assoc.is_established:
            assoc = client().associate("127.0.0.1", node.port, ae_title="LUMBAR_NODE")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assoc.send_c_store(bad_file)
        sent += 1

    for tag in SWALLOWING_TAGS.values():
        for length in (40, 120, 250, 0xFFFF):
            store_file(corrupt_length(rng.choice(originals), tag, length))
    for _ in range(FUZZED_INPUTS):
        data = rng.choice(originals)
        store_file(mutate(data, file_meta_end(data), rng))
    empty = pydicom.dcmread(canary_study[0])
    empty.PixelData = b""
    empty.SOPInstanceUID = generate_uid()
    empty.file_meta.MediaStorageSOPInstanceUID = empty.SOPInstanceUID
    empty.save_as(tmp_path / "empty.dcm", enforce_file_format=True)
    store_file((tmp_path / "empty.dcm").read_bytes())
    assoc.release()
    # An overlong Affected SOP Instance UID in the command (our SCU would refuse to send it).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        overlong = pydicom.dcmread(canary_study[0])
        overlong.SOPInstanceUID = overlong.StudyInstanceUID + ".1234567890123456789012345"
        validators = dict(pynetdicom._config.VALIDATORS)
        pynetdicom._config.VALIDATORS["UI"] = lambda _: (True, "")
        try:
            assoc = client().associate("127.0.0.1", node.port, ae_title="LUMBAR_NODE")
            assoc.send_c_store(overlong)
            assoc.release()
        finally:
            pynetdicom._config.VALIDATORS.update(validators)
    sent += 1
    assert not client().associate("127.0.0.1", node.port, ae_title="WRONG_CALLED").is_established
    for calling in (b"X\nINFO FORGED", b"\x1b[31mRED\x1b[0m", b"A\rB\x00C"):
        send_raw(node.port, associate_rq(calling=calling))
    return sent + 4


def check_output(log: str, log_format: str, canary_uids: set[str]) -> None:
    assert "canary" not in log.lower(), [line for line in log.splitlines() if "CANARY" in line]
    assert not canary_uids & set(UID_LIKE.findall(log))
    assert UID_LIKE.findall(log) == []
    assert "\x1b" not in log and "\r" not in log and "\x00" not in log
    for line in log.splitlines():
        if log_format == "json":
            json.loads(line)  # a forged line would not be a JSON object
        else:
            assert TEXT_RECORD.match(line) or line.startswith("    "), repr(line)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_patient_data_uid_or_forged_line_reaches_any_output(
    tmp_path: Path,
    checkpoint: Path,
    canary_study: list[Path],
    ris: MllpReceiver,
    log_format: str,
) -> None:
    pacs = Pacs(tmp_path / "pacs" / "received", 0).start_on_free_port()
    try:
        with run_node(
            tmp_path / "node",
            log_format=log_format,
            model=str(checkpoint),
            device="cpu",
            destinations=f"PACS@127.0.0.1:{pacs.port}",
            hl7_endpoint=f"127.0.0.1:{ris.port}",
            institution_name="CANARYSITE",
            quiet_seconds="2",
            release_grace_seconds="1",
        ) as node:
            pushed = subprocess.run(
                [STORESCU, "-aec", "LUMBAR_NODE", "127.0.0.1", str(node.port)]
                + [str(p) for p in canary_study],
                env=DCMTK_ENV,
                capture_output=True,
                timeout=120,
                check=False,
            )
            assert pushed.returncode == 0, pushed.stderr
            assert wait_for_job(node) == "done", node.log.read_text()[-4000:]
            inputs = send_malformed(node, canary_study, tmp_path)
            assert inputs >= 1000
        log = node.log.read_text(errors="replace")
    finally:
        pacs.stop()
    assert len(pacs.files()) == 2 and len(ris.control_ids()) == 1  # the results went out
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in canary_study]
    canary_uids = {
        str(uid)
        for ds in headers
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    }
    assert "refused instance from LOGCHECK" in log  # the node did log the refusals
    check_output(log, log_format, canary_uids)
