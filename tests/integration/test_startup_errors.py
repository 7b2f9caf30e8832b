"""A bad configuration stops ``pacs-node serve`` / ``db upgrade`` with one clear line, status 2;
SIGTERM stops a running ``serve`` cleanly.

Each case runs the real command in its own process and checks that stderr ends with the
``pacs-node: error: ...`` line naming the problem, with no traceback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.node_process import wait_for_listener
from tests.helpers.services import free_port

pytestmark = [pytest.mark.integration]

NODE = [sys.executable, "-m", "worker.main"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Embedded settings on free ports in ``tmp_path``, with a migrated SQLite database."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PACS_NODE_")}
    base |= {
        "PACS_NODE_PORT": str(free_port()),
        "PACS_NODE_API_PORT": str(free_port()),
        "PACS_NODE_SPOOL_DIR": str(tmp_path / "spool"),
        "PACS_NODE_DATABASE_URL": f"sqlite:///{tmp_path}/node.db",
        "PACS_NODE_MIN_FREE_BYTES": "0",
        "HF_HUB_OFFLINE": "1",
    }
    subprocess.run([*NODE, "db", "upgrade"], env=base, check=True, capture_output=True)
    return base


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def _fails(command: list[str], env: dict[str, str], **settings: str) -> str:
    """Run ``command``; assert status 2 and no traceback; return the last stderr line."""
    env = env | {f"PACS_NODE_{k.upper()}": v for k, v in settings.items()}
    run = subprocess.run(
        [*NODE, *command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    return run.stderr.strip().splitlines()[-1]


def test_unreachable_database(env: dict[str, str]) -> None:
    url = f"postgresql+psycopg2://node:secret@127.0.0.1:{free_port()}/pacs"
    line = _fails(["serve"], env, database_url=url)
    assert line.startswith("pacs-node: error: cannot reach the database ")
    assert "secret" not in line and "node:***@127.0.0.1" in line


def test_unreachable_database_on_upgrade(env: dict[str, str]) -> None:
    url = f"postgresql+psycopg2://node@127.0.0.1:{free_port()}/pacs"
    line = _fails(["db", "upgrade"], env, database_url=url)
    assert line.startswith(f"pacs-node: error: cannot reach the database {url}: ")


def test_malformed_database_url(env: dict[str, str]) -> None:
    line = _fails(["serve"], env, database_url="nosuchdialect://x/y")
    assert line.startswith("pacs-node: error: bad database URL nosuchdialect://x/y: ")


def test_unreachable_broker(env: dict[str, str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    line = _fails(["serve"], env, broker_url=url)
    assert line.startswith(f"pacs-node: error: cannot reach the broker {url}: ")


@pytest.mark.parametrize(
    ("name", "reason"), [("absent.safetensors", "No such file"), (".", "Is a directory")]
)
def test_unreadable_checkpoint(env: dict[str, str], tmp_path: Path, name: str, reason: str) -> None:
    path = (tmp_path / name).resolve()
    line = _fails(["serve"], env, model=str(path))
    assert line.startswith(f"pacs-node: error: cannot read the model checkpoint {path}: {reason}")


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("port", "abc", "'abc' is not an integer"),
        ("device", "gpu", "'gpu' is not auto, cpu, cuda or cuda:N"),
    ],
)
def test_malformed_setting_is_named(
    env: dict[str, str], setting: str, value: str, problem: str
) -> None:
    line = _fails(["serve"], env, **{setting: value})
    assert line == f"pacs-node: error: PACS_NODE_{setting.upper()}: {problem}"


def test_cuda_without_a_gpu(env: dict[str, str]) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this host has a CUDA device")
    line = _fails(["serve"], env, device="cuda")
    assert line == (
        "pacs-node: error: PACS_NODE_DEVICE: cuda is not available on this host (no CUDA device)"
    )


def test_dicom_port_in_use(env: dict[str, str], taken_port: int) -> None:
    line = _fails(["serve"], env, port=str(taken_port))
    assert line == (
        f"pacs-node: error: cannot listen for DICOM on 127.0.0.1:{taken_port}: "
        "Address already in use"
    )


def test_api_port_in_use(env: dict[str, str], taken_port: int) -> None:
    line = _fails(["serve"], env, api_port=str(taken_port))
    assert line == (
        f"pacs-node: error: cannot listen for the admin API on 127.0.0.1:{taken_port}: "
        "Address already in use"
    )


def test_sigterm_stops_serve_cleanly(env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*NODE, "serve"], env=env | {"PYTHONFAULTHANDLER": "1"}, stdout=out, stderr=out
        )
    try:
        wait_for_listener(process, int(env["PACS_NODE_PORT"]))
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=60) == 0
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack
            process.wait(timeout=10)
            raise AssertionError(f"serve did not stop:\n{log.read_text()}") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert "shutting down" in text and "Traceback" not in text
