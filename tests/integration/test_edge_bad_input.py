"""Bad input against a live SCP: every instance gets a named status, a log line and a row."""

from __future__ import annotations

import copy
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pynetdicom
import pytest
from pydicom import Dataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
)
from pynetdicom import AE, build_context
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from pacs_node.scp.statuses import StoreStatus
from tests.helpers.dicom_factory import StudySpec, make_study, write_study
from tests.helpers.node_process import NodeProcess, run_node

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with run_node(
        tmp_path_factory.mktemp("node"), quiet_seconds="1", release_grace_seconds="600"
    ) as running:
        yield running


@pytest.fixture(autouse=True)
def _send_files_as_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send files as they are on disk (not decoded and re-encoded by the SCU)."""
    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)


@pytest.fixture
def assoc(node: NodeProcess) -> Iterator[Association]:
    ae = AE(ae_title="TESTER")
    ae.add_requested_context(MRImageStorage)
    ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    association = ae.associate("127.0.0.1", node.port, ae_title="LUMBAR_NODE")
    assert association.is_established
    yield association
    association.release()


def db(node: NodeProcess) -> sqlite3.Connection:
    return sqlite3.connect(node.log.parent / "node.db")


def last_error(node: NodeProcess) -> tuple[int, str]:
    with db(node) as conn:
        return conn.execute("SELECT status, reason FROM receive_errors ORDER BY id DESC").fetchone()


def store(assoc: Association, ds: Dataset) -> int:
    return int(assoc.send_c_store(ds).Status)


def test_duplicate_is_success_and_conflict_is_refused(
    node: NodeProcess, assoc: Association
) -> None:
    ds = make_study(StudySpec(seed=21, series=("T2 TSE SAG",), slices=1))[0]
    assert store(assoc, ds) == StoreStatus.SUCCESS
    assert store(assoc, ds) == StoreStatus.SUCCESS
    with db(node) as conn:
        assert conn.execute(
            "SELECT count(*), max(times_received) FROM instances WHERE sop_instance_uid = ?",
            (ds.SOPInstanceUID,),
        ).fetchone() == (1, 2)
    other = make_study(StudySpec(seed=22, series=("T2 TSE SAG",), slices=1))[0]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = other.StudyInstanceUID, other.SeriesInstanceUID
    assert store(assoc, ds) == StoreStatus.DUPLICATE_SOP_INSTANCE
    assert "another study" in last_error(node)[1]
    assert not (node.log.parent / "spool" / other.StudyInstanceUID).exists()


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("StudyInstanceUID", "../../../../tmp/evil"),
        ("SeriesInstanceUID", "1.2.3/../../x"),
        ("StudyInstanceUID", "1.2.03"),
        ("SeriesInstanceUID", ""),
    ],
)
def test_bad_uids_are_refused_and_never_touch_a_path(
    node: NodeProcess, assoc: Association, keyword: str, value: str
) -> None:
    ds = make_study(StudySpec(seed=23, series=("T2 TSE SAG",), slices=1))[0]
    with warnings.catch_warnings():  # pydicom warns about the invalid UID we send on purpose
        warnings.simplefilter("ignore")
        setattr(ds, keyword, value)
        status = store(assoc, ds)
    assert status == StoreStatus.CANNOT_UNDERSTAND
    assert keyword in last_error(node)[1]
    root = node.log.parent
    assert not any("evil" in str(p) or ".." in p.name for p in root.rglob("*"))
    assert not Path("/tmp/evil").exists()


def test_sop_instance_mismatch(node: NodeProcess, assoc: Association) -> None:
    [path] = write_study(
        StudySpec(seed=24, series=("T2 TSE SAG",), slices=1), node.log.parent / "mm"
    )
    data = bytearray(path.read_bytes())
    # The request's UID comes from the file meta; change the data set's own copy (the last one).
    uid = path.stem.encode()
    at = data.rfind(uid) + len(uid) - 1
    data[at : at + 1] = b"1" if data[at : at + 1] != b"1" else b"2"
    path.write_bytes(bytes(data))
    assert int(assoc.send_c_store(path).Status) == StoreStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
    assert "differs from the C-STORE request" in last_error(node)[1]


def test_truncated_pixel_data_cannot_be_understood(node: NodeProcess, assoc: Association) -> None:
    ds = make_study(StudySpec(seed=25, series=("T2 TSE SAG",), slices=1, size=64))[0]
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    assert store(assoc, ds) == StoreStatus.CANNOT_UNDERSTAND
    assert "truncated" in last_error(node)[1]
    assert not list((node.log.parent / "spool").rglob(f"{ds.SOPInstanceUID}.dcm"))


def test_truncated_stream_cannot_be_understood(node: NodeProcess, assoc: Association) -> None:
    spec = StudySpec(seed=26, series=("T2 TSE SAG",), slices=1, size=64)
    [path] = write_study(spec, node.log.parent / "trunc")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3000])
    assert int(assoc.send_c_store(path).Status) == StoreStatus.CANNOT_UNDERSTAND


def test_empty_pixel_data_cannot_be_understood(node: NodeProcess, assoc: Association) -> None:
    ds = make_study(StudySpec(seed=29, series=("T2 TSE SAG",), slices=1))[0]
    ds.PixelData = b""
    assert store(assoc, ds) == StoreStatus.CANNOT_UNDERSTAND
    assert "pixel data truncated" in last_error(node)[1]
    assert "Traceback" not in node.log.read_text()


@pytest.mark.parametrize(
    "syntax", [JPEGBaseline8Bit, RLELossless, JPEG2000Lossless], ids=["jpeg", "rle", "j2k"]
)
def test_native_pixel_data_on_a_compressed_context_cannot_be_understood(
    node: NodeProcess, syntax: str
) -> None:
    ds = make_study(StudySpec(seed=30, series=("T2 TSE SAG",), slices=1))[0]
    ds.file_meta.TransferSyntaxUID = syntax
    ae = AE(ae_title="TESTER")
    ae.add_requested_context(MRImageStorage, syntax)
    association = ae.associate("127.0.0.1", node.port, ae_title="LUMBAR_NODE")
    assert association.is_established
    try:
        assert store(association, ds) == StoreStatus.CANNOT_UNDERSTAND
    finally:
        association.release()
    assert "pixel data is not encapsulated" in last_error(node)[1]
    assert not list((node.log.parent / "spool").rglob(f"{ds.SOPInstanceUID}.dcm"))


def test_a_different_copy_under_a_held_uid_leaves_the_first_in_place(
    node: NodeProcess, assoc: Association
) -> None:
    first = make_study(StudySpec(seed=31, series=("T2 TSE SAG",), slices=1))[0]
    assert store(assoc, first) == StoreStatus.SUCCESS
    (stored,) = (node.log.parent / "spool").rglob(f"{first.SOPInstanceUID}.dcm")
    kept = stored.read_bytes()
    changed = copy.deepcopy(first)
    changed.PixelData = bytes(len(first.PixelData))
    assert store(assoc, changed) == StoreStatus.SUCCESS  # as PACS answer: the first is kept
    assert stored.read_bytes() == kept
    with db(node) as conn:
        assert conn.execute(
            "SELECT times_received, different_copies FROM instances WHERE sop_instance_uid = ?",
            (first.SOPInstanceUID,),
        ).fetchone() == (1, 1)
    wait_until(lambda: "kept the first copy" in node.log.read_text(), "the log line")


def test_an_overlong_affected_sop_instance_uid_ends_the_association_at_once(
    node: NodeProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = make_study(StudySpec(seed=32, series=("T2 TSE SAG",), slices=1))[0]
    with warnings.catch_warnings():  # pydicom warns about the invalid UID we send on purpose
        warnings.simplefilter("ignore")
        ds.SOPInstanceUID = "1.2." + "3" * 70
    # Our SCU would refuse to encode it: let it send what a faulty sender sends.
    monkeypatch.setitem(pynetdicom._config.VALIDATORS, "UI", lambda _: (True, ""))
    ae = AE(ae_title="TESTER")
    ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
    association = ae.associate("127.0.0.1", node.port, ae_title="LUMBAR_NODE")
    started = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        response = association.send_c_store(ds)
    # No status can be answered for a request that cannot be decoded: the node aborts at once.
    assert "Status" not in response and time.monotonic() - started < 2
    wait_until(lambda: not association.is_established, "the association to end", timeout=30)
    assert echo_ok(node.port)


def test_a_wrong_called_ae_title_is_rejected(node: NodeProcess) -> None:
    ae = AE(ae_title="TESTER")
    ae.add_requested_context(Verification)
    association = ae.associate("127.0.0.1", node.port, ae_title="LUMBAR_NODE_WITH")
    assert association.is_rejected
    expected = (0, "association rejected: called AE LUMBAR_NODE_WITH is not this node's AE title")
    # The node records the rejection after it has answered.
    wait_until(lambda: last_error(node) == expected, "the rejection's row")


def test_any_called_ae_title_is_answered_when_the_site_says_so(tmp_path: Path) -> None:
    with run_node(tmp_path, check_called_ae="false") as lenient:
        ae = AE(ae_title="TESTER")
        ae.add_requested_context(Verification)
        association = ae.associate("127.0.0.1", lenient.port, ae_title="ANY-SCP")
        assert association.is_established
        assert association.send_c_echo().Status == 0
        association.release()


def test_non_lumbar_study_is_stored_then_skipped(node: NodeProcess, assoc: Association) -> None:
    spec = StudySpec(seed=27, series=("T2 TSE SAG",), slices=2, body_part="KNEE")
    for ds in make_study(spec):
        assert store(assoc, ds) == StoreStatus.SUCCESS
    deadline = time.monotonic() + 120  # a busy machine may take far longer than the usual 5 s
    row = None
    # The job sends its not-analysed report (to no destination here), then ends skipped.
    while time.monotonic() < deadline and (row is None or row[0] not in ("skipped", "failed")):
        with db(node) as conn:
            row = conn.execute(
                "SELECT j.state, j.reason FROM jobs j JOIN studies s ON s.id = j.study_id "
                "WHERE s.study_instance_uid = ?",
                (spec.study_uid,),
            ).fetchone()
        time.sleep(0.2)
    assert row == ("skipped", "body part KNEE is not the lumbar spine")


def test_echo_still_works_after_everything(assoc: Association) -> None:
    assert assoc.send_c_echo().Status == 0


def echo_ok(port: int) -> bool:
    ae = AE(ae_title="TESTER")
    ae.add_requested_context(Verification)
    association = ae.associate("127.0.0.1", port, ae_title="LUMBAR_NODE")
    if not association.is_established:
        return False
    ok = association.send_c_echo().Status == 0
    association.release()
    return ok


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_full_disk_is_out_of_resources(tmp_path: Path) -> None:
    with run_node(tmp_path, min_free_bytes=str(1 << 62)) as full:
        ae = AE(ae_title="TESTER")
        ae.add_requested_context(MRImageStorage)
        association = ae.associate("127.0.0.1", full.port, ae_title="LUMBAR_NODE")
        ds = make_study(StudySpec(seed=28, slices=1))[0]
        assert store(association, ds) == StoreStatus.OUT_OF_RESOURCES
        association.release()
        assert last_error(full)[0] == StoreStatus.OUT_OF_RESOURCES
    assert not list((tmp_path / "spool").rglob("*"))


def test_storage_contexts_cover_the_lumbar_study(node: NodeProcess) -> None:
    """MR, Enhanced MR, SC, SEG and SR are accepted, compressed syntaxes as sent."""
    ae = AE(ae_title="TESTER")
    uids = {
        "MR": "1.2.840.10008.5.1.4.1.1.4",
        "Enhanced MR": "1.2.840.10008.5.1.4.1.1.4.1",
        "Secondary Capture": "1.2.840.10008.5.1.4.1.1.7",
        "SEG": "1.2.840.10008.5.1.4.1.1.66.4",
        "Comprehensive 3D SR": "1.2.840.10008.5.1.4.1.1.88.34",
    }
    jpeg2000, rle = "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5"
    ae.requested_contexts = [
        build_context(uid, [ts]) for uid in uids.values() for ts in (jpeg2000, rle)
    ]
    association = ae.associate("127.0.0.1", node.port, ae_title="LUMBAR_NODE")
    accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in association.accepted_contexts}
    association.release()
    assert accepted == {(u, ts) for u in uids.values() for ts in (jpeg2000, rle)}
