"""The Orthanc test helper starts a real Orthanc that stores, answers REST and auto-routes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.dicom_factory import StudySpec, write_study
from tests.helpers.node_process import start_listening
from tests.helpers.orthanc import AUTO_ROUTE_LUA, ORTHANC, run_orthanc, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ORTHANC.exists(), reason=f"{ORTHANC} is not installed"),
]

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


@contextmanager
def _storescp(folder: Path, aet: str = "NODE") -> Iterator[int]:
    """A DCMTK storescp writing into ``folder``; yields its port."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder.parent / "storescp.log"

    def spawn(port: int) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                ["/usr/bin/storescp", "-aet", aet, "--output-directory", str(folder), str(port)],
                env=DCMTK_ENV,
                stdout=out,
                stderr=out,
            )

    process, port = start_listening(spawn)
    try:
        yield port
    finally:
        process.kill()
        process.wait()


def test_orthanc_stores_over_rest_and_dicom_and_stops(tmp_path: Path) -> None:
    files = write_study(StudySpec(seed=1, slices=1), tmp_path / "study")
    with run_orthanc(tmp_path / "orthanc") as orthanc:
        assert orthanc.get_json("/system")["DicomAet"] == "ORTHANC"
        instance = orthanc.upload(files[0])
        assert orthanc.get_json("/instances") == [instance]
        assert orthanc.series_modalities() == ["MR"]

        storescu = ["/usr/bin/storescu", "-aec", orthanc.aet, "127.0.0.1"]
        sent = subprocess.run(
            [*storescu, str(orthanc.dicom_port), str(files[1])],
            env=DCMTK_ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr + orthanc.log_tail()
        assert orthanc.instance_count() == 2, orthanc.log_tail()
    assert orthanc.process.poll() is not None


def test_the_auto_routing_rule_forwards_a_stable_study(tmp_path: Path) -> None:
    received = tmp_path / "node"
    files = write_study(StudySpec(seed=2, slices=1), tmp_path / "study")
    assert len(files) == 2
    with (
        _storescp(received) as node_port,
        run_orthanc(
            tmp_path / "orthanc",
            modalities={"node": ("NODE", "127.0.0.1", node_port)},
            stable_age=1,
            lua=AUTO_ROUTE_LUA,
        ) as orthanc,
    ):
        for path in files:
            orthanc.upload(path)
        try:
            wait_until(lambda: len(list(received.iterdir())) == 2, 60, "storescp holds 2 files")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{orthanc.log_tail()}") from exc
