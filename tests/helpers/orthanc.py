"""A real Orthanc PACS (the Debian binary and its DICOMweb plugin) that tests start and stop.

Each Orthanc gets its own folder (configuration, SQLite index, storage, ``orthanc.log``) and two
fresh loopback ports, HTTP and DICOM. It counts as started once that process listens on both; if
it exits first (a parallel test took one of the ports), it is started again on new ports.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.node_process import start_listening, wait_for_listener
from tests.helpers.services import free_port

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")

AUTO_ROUTE_LUA = """\
function OnStableStudy(studyId, tags, metadata)
  RestApiPost('/modalities/node/store', studyId)
end
"""
"""The auto-routing rule sites write first: forward every stable study to the modality ``node``
(objects other systems sent back into Orthanc included)."""

# Loopback only: never go through an HTTP proxy set in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class OrthancStartError(RuntimeError):
    """Orthanc did not come up; the message ends with the tail of its log."""


@dataclass
class Orthanc:
    """A running Orthanc: its process, ports, AE title and folder."""

    process: subprocess.Popen[bytes]
    http_port: int
    dicom_port: int
    aet: str
    workdir: Path

    @property
    def log(self) -> Path:
        """Orthanc's stdout and stderr."""
        return self.workdir / "orthanc.log"

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log, for failure messages."""
        return _tail(self.log, lines)

    def url(self, path: str) -> str:
        """Absolute URL of a REST ``path`` such as ``/studies``."""
        return f"http://127.0.0.1:{self.http_port}/{path.lstrip('/')}"

    def get_json(self, path: str, timeout: float = 30.0) -> Any:
        """GET ``path`` and decode its JSON answer."""
        with _OPENER.open(self.url(path), timeout=timeout) as response:
            return json.load(response)

    def post(self, path: str, body: bytes, timeout: float = 60.0) -> Any:
        """POST ``body`` to ``path`` and decode its JSON answer."""
        # The URL is always http://127.0.0.1 (see url()), so no other scheme can be opened.
        request = urllib.request.Request(self.url(path), data=body, method="POST")  # noqa: S310
        with _OPENER.open(request, timeout=timeout) as response:
            return json.load(response)

    def declare_modality(self, name: str, aet: str, port: int, host: str = "127.0.0.1") -> None:
        """Add (or change) a DICOM peer Orthanc may send to and take C-MOVEs from, at runtime."""
        body = json.dumps({"AET": aet, "Host": host, "Port": port}).encode()
        url = self.url(f"/modalities/{name}")
        request = urllib.request.Request(url, data=body, method="PUT")  # noqa: S310
        _OPENER.open(request, timeout=30).close()

    def upload(self, path: Path) -> str:
        """Store one DICOM file through REST; returns its Orthanc instance id."""
        answer = self.post("/instances", path.read_bytes())
        return str(answer["ID"])

    def instance_count(self) -> int:
        """How many instances Orthanc holds."""
        return int(self.get_json("/statistics")["CountInstances"])

    def series_modalities(self) -> list[str]:
        """Modality of every series Orthanc holds, sorted (e.g. ``["MR", "SEG", "SR"]``)."""
        series = self.get_json("/series?expand")
        return sorted(s["MainDicomTags"].get("Modality", "") for s in series)

    def stop(self) -> None:
        """Terminate Orthanc and wait for it; kill it if it does not stop in time."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_orthanc(
    workdir: Path,
    *,
    aet: str = "ORTHANC",
    modalities: dict[str, tuple[str, str, int]] | None = None,
    stable_age: int = 3,
    lua: str | None = None,
    users: dict[str, str] | None = None,
    dicomweb_servers: dict[str, dict[str, Any]] | None = None,
) -> Orthanc:
    """Start Orthanc in ``workdir`` on free loopback ports and wait until it listens on both.

    Args:
        workdir: its folder (created if needed).
        aet: its own AE title.
        modalities: DICOM peers it may send to, ``{name: (aet, host, port)}``; start the peers
            first, since their ports must be known here.
        stable_age: seconds without a new instance before a study is stable.
        lua: a Lua script to load (e.g. :data:`AUTO_ROUTE_LUA`).
        users: HTTP basic authentication, ``{user: password}`` (None: REST open to all).
        dicomweb_servers: DICOMweb servers it may send to (``DicomWeb.Servers``),
            ``{name: {"Url": ..., "HttpHeaders": {...}}}``: the targets of
            ``/dicom-web/servers/<name>/stow``.

    Raises:
        OrthancStartError: if it does not listen on both ports after a few attempts.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config_path, log = workdir / "orthanc.json", workdir / "orthanc.log"
    config: dict[str, Any] = {
        "Name": f"test-{aet}",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "storage"),
        "DicomAet": aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.exists() else [],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Servers": dicomweb_servers or {}},
        "DicomModalities": {
            name: {"AET": peer_aet, "Host": host, "Port": port}
            for name, (peer_aet, host, port) in (modalities or {}).items()
        },
        "StableAge": stable_age,
        "SaveJobs": False,
    }
    if users is not None:
        config.update(AuthenticationEnabled=True, RegisteredUsers=users)
    if lua is not None:
        script = workdir / "orthanc.lua"
        script.write_text(lua)
        config["LuaScripts"] = [str(script)]
    dicom_ports: dict[int, int] = {}
    spawned: list[subprocess.Popen[bytes]] = []

    def spawn(http_port: int) -> subprocess.Popen[bytes]:
        dicom_port = free_port()
        while dicom_port == http_port:
            dicom_port = free_port()
        config.update(HttpPort=http_port, DicomPort=dicom_port)
        config_path.write_text(json.dumps(config, indent=2))
        with log.open("ab") as out:
            process = subprocess.Popen(
                [str(ORTHANC), str(config_path)], stdout=out, stderr=out, cwd=workdir
            )
        spawned.append(process)
        dicom_ports[http_port] = dicom_port
        # Exiting here (DICOM port taken) makes start_listening try new ports, as for HTTP.
        wait_for_listener(process, dicom_port, timeout=60)
        return process

    try:
        process, http_port = start_listening(spawn)
    except (RuntimeError, TimeoutError) as exc:
        for leftover in spawned:
            if leftover.poll() is None:
                leftover.kill()
                leftover.wait()
        raise OrthancStartError(f"Orthanc did not start: {exc}\n{_tail(log, 40)}") from exc
    return Orthanc(process, http_port, dicom_ports[http_port], aet, workdir)


@contextmanager
def run_orthanc(workdir: Path, **kwargs: Any) -> Iterator[Orthanc]:
    """:func:`start_orthanc` for the ``with`` block, stopped at its end."""
    orthanc = start_orthanc(workdir, **kwargs)
    try:
        yield orthanc
    finally:
        orthanc.stop()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 0.1 s until it holds.

    Raises:
        TimeoutError: naming ``what``, if it does not hold within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
