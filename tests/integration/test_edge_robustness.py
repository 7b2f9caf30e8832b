"""The live SCP under hostile input: fuzzed data sets and PDUs, silent and slow peers, TLS."""

from __future__ import annotations

import random
import re
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pynetdicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from pacs_node.instance_store import LOCK_FOLDER
from pacs_node.scp.statuses import StoreStatus
from pacs_node.validation import is_valid_uid
from tests.helpers.dicom_factory import StudySpec, write_study
from tests.helpers.fuzz import associate_rq, file_meta_end, mutate
from tests.helpers.node_process import NodeProcess, run_node

pytestmark = pytest.mark.integration

NAMED_STATUSES = {int(s) for s in StoreStatus}


def client_ae() -> AE:
    ae = AE(ae_title="FUZZER")
    ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    return ae


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    with run_node(
        tmp_path / "node", acse_timeout="2", quiet_seconds="600", max_associations="4"
    ) as running:
        yield running


def echo_ok(port: int) -> bool:
    assoc = client_ae().associate("127.0.0.1", port, ae_title="LUMBAR_NODE")
    if not assoc.is_established:
        return False
    ok = assoc.send_c_echo().Status == 0
    assoc.release()
    return ok


@pytest.mark.slow
def test_fuzzed_data_sets_each_get_a_status(
    node: NodeProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)
    rng = random.Random(1234)
    base = [p.read_bytes() for p in write_study(StudySpec(seed=31, slices=2), tmp_path / "base")]
    fuzz_file = tmp_path / "fuzz.dcm"
    statuses: list[int] = []
    rss: list[int] = []
    assoc = client_ae().associate("127.0.0.1", node.port, ae_title="LUMBAR_NODE")
    for i in range(2000):
        data = rng.choice(base)
        fuzz_file.write_bytes(mutate(data, file_meta_end(data), rng))
        if not assoc.is_established:
            assoc = client_ae().associate("127.0.0.1", node.port, ae_title="LUMBAR_NODE")
        rsp = assoc.send_c_store(fuzz_file)
        statuses.append(int(rsp.Status) if "Status" in rsp else -1)
        if i in (200, 1999):
            rss.append(node.rss_bytes())
    assoc.release()
    assert -1 not in statuses, "a request went unanswered"
    assert set(statuses) <= NAMED_STATUSES
    assert statuses.count(StoreStatus.CANNOT_UNDERSTAND) > 500  # the fuzz did bite
    assert rss[1] - rss[0] < 64 * 1024 * 1024, f"memory grew {rss}"
    assert echo_ok(node.port)
    # Nothing outside the spool: every file is <study>/<series>/<sop>.dcm of valid UIDs (beside
    # the node's own folder of stripe locks, <n>.lock).
    spool = node.log.parent / "spool"
    for path in spool.rglob("*"):
        parts = path.relative_to(spool).parts
        if parts[0] == LOCK_FOLDER:
            assert path.is_dir() or re.fullmatch(r"[0-9]+\.lock", path.name), path
            continue
        assert all(is_valid_uid(p.removesuffix(".dcm")) for p in parts), path
        assert path.is_dir() or (len(parts) == 3 and path.suffix == ".dcm")
    outside = {p.name for p in node.log.parent.iterdir()} - {"spool", "node.log"}
    assert {n for n in outside if not n.startswith("node.db")} == set()


@pytest.mark.slow
def test_fuzzed_pdus_never_take_the_node_down(node: NodeProcess) -> None:
    rng = random.Random(99)
    valid = associate_rq()
    answers: list[int] = []
    for i in range(300):
        kind = i % 4
        if kind == 0:
            payload = bytearray(valid)
            for _ in range(rng.randint(1, 6)):
                payload[rng.randrange(len(payload))] = rng.randrange(256)
        elif kind == 1:
            payload = bytearray(valid[: rng.randrange(1, len(valid))])
        elif kind == 2:
            payload = bytearray(rng.randbytes(rng.randint(1, 300)))
        else:  # a valid request, then a whole PDU of garbage
            garbage = struct.pack(">BBI", rng.randrange(1, 8), 0, 40) + rng.randbytes(40)
            payload = bytearray(valid) + garbage
        with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
            s.sendall(payload)
            if kind != 3:  # the node sees the end of the stream (a partial PDU never completes)
                s.shutdown(socket.SHUT_WR)
            # The node answers (A-ASSOCIATE-AC/RJ or A-ABORT) or closes; a peer then closes too.
            try:
                reply = s.recv(65536)
            except ConnectionResetError:
                reply = b""
            answers.append(reply[0] if reply else 0)
    assert set(answers) <= {0, 0x02, 0x03, 0x07}, set(answers)
    assert answers.count(0x07) > 50  # garbage after a request is answered with A-ABORT
    assert node.process.poll() is None
    # Connections torn down by the flood free their slots at once (test_edge_probes); allow
    # a busy machine some seconds to work off the flood.
    deadline = time.monotonic() + 60
    while not echo_ok(node.port):
        assert time.monotonic() < deadline, "the node did not recover from the PDU flood"
        time.sleep(1)


def test_silent_clients_neither_block_nor_burn_cpu(node: NodeProcess) -> None:
    silent = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(30)]
    slow = socket.create_connection(("127.0.0.1", node.port))
    slow.sendall(associate_rq()[:3])  # starts a PDU header, then stalls
    try:
        time.sleep(0.5)
        before = node.cpu_seconds()
        time.sleep(3)
        used = node.cpu_seconds() - before
        assert used < 0.6, f"{used:.2f} s CPU in 3 s while peers are silent"
        # 31 idle connections and a limit of 4: a real sender still gets in, at once.
        started = time.monotonic()
        assert echo_ok(node.port)
        assert time.monotonic() - started < 2
        # The ARTIM timer (acse_timeout = 2 s) closes connections that never asked.
        silent[0].settimeout(10)
        assert silent[0].recv(1024) == b""
    finally:
        for s in [*silent, slow]:
            s.close()


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Test CA",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.crt"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "")):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        extfile = d / f"{name}.ext"
        extfile.write_text(ext + "\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.crt"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            str(d / f"{name}.crt"),
            "-extfile",
            str(extfile),
        )
    return d


def tls_echo(port: int, pki: Path, client_cert: bool) -> bool:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.crt"))
    if client_cert:
        context.load_cert_chain(pki / "client.crt", pki / "client.key")
    assoc = client_ae().associate(
        "127.0.0.1", port, ae_title="LUMBAR_NODE", tls_args=(context, "127.0.0.1")
    )
    if not assoc.is_established:
        return False
    ok = assoc.send_c_echo().Status == 0
    assoc.release()
    return ok


def test_tls_with_required_client_certificates(tmp_path: Path, pki: Path) -> None:
    with run_node(
        tmp_path,
        tls_cert=str(pki / "server.crt"),
        tls_key=str(pki / "server.key"),
        tls_ca=str(pki / "ca.crt"),
        acse_timeout="3",
    ) as node:
        silent = socket.create_connection(("127.0.0.1", node.port))  # never starts TLS
        try:
            assert tls_echo(node.port, pki, client_cert=True)
            assert not tls_echo(node.port, pki, client_cert=False)
            assert not echo_ok(node.port)  # plain DICOM to a TLS port
        finally:
            silent.close()


def test_tls_without_client_certificates(tmp_path: Path, pki: Path) -> None:
    with run_node(
        tmp_path, tls_cert=str(pki / "server.crt"), tls_key=str(pki / "server.key")
    ) as node:
        assert tls_echo(node.port, pki, client_cert=False)
