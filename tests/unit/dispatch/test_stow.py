"""STOW-RS sender against a real HTTP server on loopback that answers as it is told: one
multipart request per study, each object's outcome from the answer, a server that refuses the
credentials, fails, hangs or is down; credentials only in the Authorization header."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacs_node.destinations import Destination, Secret
from pacs_node.dispatch.stow import send_studies

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
TOKEN = "s3cr3t-t0ken"


@dataclass
class Request:
    """What the server received."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class StowServer:
    """Answers each POST with ``status`` and ``answer`` (a DICOM JSON data set, or raw bytes)."""

    status: int = 200
    answer: Any = None
    hang: threading.Event | None = None
    requests: list[Request] = field(default_factory=list)
    port: int = 0

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"


@pytest.fixture
def stow_server() -> Iterator[StowServer]:
    state = StowServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            body = self.rfile.read(length)
            state.requests.append(Request(self.path, dict(self.headers.items()), body))
            if state.hang is not None:
                state.hang.wait(30)
                return
            answer = state.answer
            data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    if state.hang is not None:
        state.hang.set()
    server.shutdown()
    server.server_close()
    thread.join(10)


def write_sr(path: Path, study_uid: str) -> Path:
    """A minimal SR Part 10 file of ``study_uid``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = COMPREHENSIVE_3D_SR
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """Three objects of two studies: the first and last of one, the middle one of another."""
    first, second = generate_uid(), generate_uid()
    return [write_sr(tmp_path / f"{i}.dcm", s) for i, s in enumerate((first, second, first))]


def sop_uid(path: Path) -> str:
    return str(dcmread(path).SOPInstanceUID)


def referenced(uid: str, reason: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"00081155": {"vr": "UI", "Value": [uid]}}
    if reason is not None:
        item["00081197"] = {"vr": "US", "Value": [reason]}
    return item


def destination(server: StowServer, token: str | None = TOKEN) -> Destination:
    web = Destination.dicomweb(server.url(), name="archive")
    return replace(web, authorization=None if token is None else Secret(f"Bearer {token}"))


def test_one_multipart_request_per_study_with_the_credentials(
    stow_server: StowServer, files: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    outcomes = send_studies(destination(stow_server), files)
    assert [(o.delivered, o.status, o.error) for o in outcomes] == [(True, "HTTP 200", None)] * 3
    assert [r.path for r in stow_server.requests] == ["/dicom-web/studies"] * 2
    first, second = stow_server.requests
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert first.headers["Accept"] == "application/dicom+json"
    assert dicom_parts(first) == [files[0].read_bytes(), files[2].read_bytes()]
    assert dicom_parts(second) == [files[1].read_bytes()]
    assert TOKEN not in caplog.text


def dicom_parts(request: Request) -> list[bytes]:
    """The contents of a multipart/related; type="application/dicom" body."""
    content_type = request.headers["Content-Type"]
    assert content_type.startswith('multipart/related; type="application/dicom"; boundary=')
    delimiter = b"--" + content_type.rpartition("boundary=")[2].encode()
    first, *parts, last = request.body.split(delimiter)
    assert (first, last) == (b"", b"--\r\n")
    contents = []
    for part in parts:
        headers, _, content = part.partition(b"\r\n\r\n")
        assert headers == b"\r\nContent-Type: application/dicom"
        contents.append(content.removesuffix(b"\r\n"))
    return contents


def test_refused_objects_get_their_failure_reason(
    stow_server: StowServer, files: list[Path]
) -> None:
    uids = [sop_uid(p) for p in files[:2]]
    stow_server.status = 202
    stow_server.answer = {
        "00081198": {"vr": "SQ", "Value": [referenced(uids[0], 0xA700)]},
        "00081199": {"vr": "SQ", "Value": [referenced(uids[1])]},
    }
    outcomes = send_studies(destination(stow_server), files[:2])
    assert [(o.delivered, o.status, o.error) for o in outcomes] == [
        (False, "0xA700", "refused by server (HTTP 202)"),
        (True, "HTTP 202", None),
    ]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ([{"00081198": {"vr": "SQ", "Value": [{}]}}], (False, "HTTP 409")),  # an array, no UID
        (b"<not json>", (False, "HTTP 409")),
    ],
)
def test_a_conflict_without_a_usable_answer_is_not_counted_as_stored(
    stow_server: StowServer, files: list[Path], answer: Any, expected: tuple[bool, str]
) -> None:
    stow_server.status, stow_server.answer = 409, answer
    (outcome,) = send_studies(destination(stow_server), files[:1])
    assert (outcome.delivered, outcome.status) == expected
    assert outcome.error == "not confirmed by server (HTTP 409)"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, "authentication refused (HTTP 401)"),
        (403, "authentication refused (HTTP 403)"),
        (503, "server error (HTTP 503)"),
        (415, "refused (HTTP 415)"),
    ],
)
def test_an_error_answer_fails_every_object(
    stow_server: StowServer,
    files: list[Path],
    status: int,
    error: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    stow_server.status, stow_server.answer = status, {}
    outcomes = send_studies(destination(stow_server), files)
    assert {(o.delivered, o.status, o.error) for o in outcomes} == {
        (False, f"HTTP {status}", error)
    }
    assert error in caplog.text and TOKEN not in caplog.text


def test_no_authorization_header_without_credentials(
    stow_server: StowServer, files: list[Path]
) -> None:
    send_studies(destination(stow_server, token=None), files[:1])
    assert "Authorization" not in stow_server.requests[0].headers


def test_a_server_that_does_not_answer_times_out(
    stow_server: StowServer, files: list[Path]
) -> None:
    stow_server.hang = threading.Event()
    outcomes = send_studies(destination(stow_server), files[:1], timeout=1)
    assert [(o.delivered, o.status, o.error) for o in outcomes] == [
        (False, None, "no answer in time (timeout)")
    ]


def test_a_server_that_is_down_fails_every_object(files: list[Path]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    down = Destination.dicomweb(f"http://127.0.0.1:{port}/dicom-web")
    outcomes = send_studies(down, files, timeout=2)
    assert {(o.delivered, o.status, o.error) for o in outcomes} == {
        (False, None, "cannot connect: [Errno 111] Connection refused")
    }


def test_an_unloadable_ca_bundle_fails_every_object(tmp_path: Path, files: list[Path]) -> None:
    not_a_bundle = tmp_path / "ca.pem"
    not_a_bundle.write_text("no certificates here\n")
    web = replace(Destination.dicomweb("https://pacs.example.org/dicom-web"), ca_file=not_a_bundle)
    outcomes = send_studies(web, files[:1])
    assert not outcomes[0].delivered and outcomes[0].status is None
    assert outcomes[0].error is not None
    assert outcomes[0].error.startswith("cannot load the CA certificates")
