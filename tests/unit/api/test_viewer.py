"""The OHIF viewer at /viewer/ (over a stand-in of OHIF's dist folder) and its session cookie."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.api.app import create_app
from pacs_node.api.auth import SESSION_COOKIE
from pacs_node.api.tokens import Role, create_token, revoke_token
from pacs_node.config import Settings
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.errors import SettingError
from tests.unit.api.conftest import RecordingQueue

INDEX = (
    '<html><head><script>window.PUBLIC_URL="/"</script><link rel="manifest" href="/manifest.json">'
    '<meta name="msapplication-TileImage" content="/assets/tile.png">'
    '<script src="/app-config.js"></script><a href="//cdn.example/x">x</a></head></html>'
)
BUNDLE = b'(() => {\n__webpack_require__.p = "/";\n})();'
STYLE = b"@font-face{src:url(/f1.woff2)}a{background:url(//cdn.example/b.png)}"
UID = "1.2.826.0.1.3680043.8.498.77"


@dataclass
class ViewerNode:
    client: TestClient
    sessions: sessionmaker[Session]
    secrets: dict[Role, str]


def fake_dist(folder: Path) -> Path:
    """A dist folder shaped like OHIF's: index.html, a bundle that sets webpack's public path,
    a style sheet with root URLs, and a plain file."""
    folder.mkdir()
    (folder / "index.html").write_text(INDEX)
    (folder / "app.bundle.js").write_bytes(BUNDLE)
    (folder / "other.bundle.js").write_bytes(b"console.log(1)")
    (folder / "app.bundle.css").write_bytes(STYLE)
    (folder / "assets").mkdir()
    (folder / "assets" / "logo.svg").write_text("<svg/>")
    return folder


@pytest.fixture
def make_viewer_node(
    tmp_path: Path, _sqlite_template: Path
) -> Iterator[Callable[[Path], ViewerNode]]:
    database = tmp_path / "node.db"
    shutil.copy(_sqlite_template, database)
    engine = make_engine(f"sqlite:///{database}")
    sessions = make_session_factory(engine)
    clients: list[TestClient] = []

    def build(viewer_dir: Path) -> ViewerNode:
        settings = Settings(
            database_url=f"sqlite:///{database}",
            spool_dir=tmp_path,
            min_free_bytes=0,
            viewer_dir=viewer_dir,
        )
        client = TestClient(create_app(settings, sessions, queue=RecordingQueue(sessions)))
        clients.append(client)
        secrets = {}
        with sessions.begin() as session:
            for role in Role:
                _, secrets[role] = create_token(session, f"{role.value}-{len(clients)}", role)
        return ViewerNode(client, sessions, secrets)

    yield build
    for client in clients:
        client.close()
    engine.dispose()


@pytest.fixture
def viewer_node(make_viewer_node: Callable[[Path], ViewerNode], tmp_path: Path) -> ViewerNode:
    return make_viewer_node(fake_dist(tmp_path / "dist"))


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_a_viewer_session_sets_an_http_only_strict_cookie_holding_the_token(
    viewer_node: ViewerNode,
) -> None:
    client, secrets = viewer_node.client, viewer_node.secrets
    opened = client.post("/api/viewer-session", headers=bearer(secrets[Role.VIEWER]))
    assert opened.status_code == 204
    cookie = opened.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}={secrets[Role.VIEWER]};")
    assert {"HttpOnly", "Path=/", "SameSite=strict"} <= {p.strip() for p in cookie.split(";")}
    assert "Secure" not in cookie  # plain http here; set on https
    assert client.post("/api/viewer-session", headers=bearer(secrets[Role.ADMIN])).is_success
    assert (
        client.post("/api/viewer-session", headers=bearer(secrets[Role.SENDER])).status_code == 403
    )
    client.cookies.clear()
    assert client.post("/api/viewer-session").status_code == 401
    client.cookies.set(SESSION_COOKIE, secrets[Role.VIEWER])
    assert client.post("/api/viewer-session").status_code == 401, "a cookie opens no session"


def test_the_session_cookie_admits_reads_of_viewer_routes_only(viewer_node: ViewerNode) -> None:
    client, secrets = viewer_node.client, viewer_node.secrets
    client.cookies.set(SESSION_COOKIE, secrets[Role.ADMIN])
    assert client.get("/api/jobs").status_code == 200
    assert client.get("/dicom-web/studies").status_code == 200
    # Never an admin action, not even with an admin's token: only the header is taken for those.
    assert client.post("/api/jobs/1/retry").status_code == 401
    assert client.get("/api/audit").status_code == 401
    client.cookies.set(SESSION_COOKIE, secrets[Role.SENDER])
    assert client.get("/api/jobs").status_code == 403
    client.cookies.set(SESSION_COOKIE, secrets[Role.VIEWER])
    with viewer_node.sessions.begin() as session:
        revoke_token(session, "viewer-1")
    assert client.get("/api/jobs").status_code == 401


def test_the_app_is_served_under_viewer_with_its_root_paths_rewritten(
    viewer_node: ViewerNode,
) -> None:
    client = viewer_node.client
    assert client.get("/viewer", follow_redirects=False).headers["location"] == "/viewer/"
    for path in ("/viewer/", "/viewer/index.html", f"/viewer/viewer?StudyInstanceUIDs={UID}"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-cache"
        assert page.text == (
            '<html><head><script>window.PUBLIC_URL="/viewer/"</script>'
            '<link rel="manifest" href="/viewer/manifest.json">'
            '<meta name="msapplication-TileImage" content="/viewer/assets/tile.png">'
            '<script src="/viewer/app-config.js"></script><a href="//cdn.example/x">x</a>'
            "</head></html>"
        )
    bundle = client.get("/viewer/app.bundle.js")
    assert bundle.content == b'(() => {\n__webpack_require__.p = "/viewer/";\n})();'
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert client.get("/viewer/other.bundle.js").content == b"console.log(1)"
    style = client.get("/viewer/app.bundle.css")
    assert (
        style.content
        == b"@font-face{src:url(/viewer/f1.woff2)}a{background:url(//cdn.example/b.png)}"
    )
    assert style.headers["content-type"].startswith("text/css")
    assert client.get("/viewer/assets/logo.svg").text == "<svg/>"
    missing = client.get("/viewer/missing.bundle.js")
    assert missing.status_code == 404 and "no such file" in missing.json()["detail"]
    assert client.get("/viewer/%2e%2e/node.db").status_code == 404


def test_app_config_points_ohif_at_the_nodes_own_dicomweb(viewer_node: ViewerNode) -> None:
    config = viewer_node.client.get("/viewer/app-config.js")
    assert config.status_code == 200 and config.headers["cache-control"] == "no-cache"
    assert config.headers["content-type"].startswith("text/javascript")
    text = config.text
    assert "const dicomWeb = `${window.location.origin}/dicom-web`;" in text
    for setting in (
        "routerBasename: '/viewer'",
        "qidoRoot: dicomWeb",
        "wadoRoot: dicomWeb",
        "imageRendering: 'wadors'",
        "thumbnailRendering: 'wadors'",
        "supportsFuzzyMatching: false",
        "supportsWildcard: true",
        "omitQuotationForMultipartRequest: true",
        "enableStudyLazyLoad: true",
    ):
        assert setting in text


def test_without_ohif_the_viewer_answers_404_and_the_node_serves_the_rest(
    make_viewer_node: Callable[[Path], ViewerNode], tmp_path: Path
) -> None:
    node = make_viewer_node(tmp_path / "not-installed")
    for path in ("/viewer/", "/viewer/app-config.js", "/viewer/viewer"):
        answer = node.client.get(path)
        assert answer.status_code == 404
        assert "OHIF viewer is not installed" in answer.json()["detail"]
    assert node.client.get("/api/jobs", headers=bearer(node.secrets[Role.VIEWER])).is_success


def test_a_viewer_dir_without_index_html_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match="viewer_dir"):
        Settings(viewer_dir=tmp_path)


def test_the_request_log_names_the_route_not_the_study(
    viewer_node: ViewerNode, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pacs_node.api.app"):
        viewer_node.client.get(f"/viewer/viewer?StudyInstanceUIDs={UID}")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "pacs_node.api.app"]
    assert line.startswith("GET /viewer/{path:path} 200") and UID not in line
