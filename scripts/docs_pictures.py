"""Redraw the README's pictures from a real demo run with the shipped checkpoint.

``docs/result-overlay.png``: the overlay ``pacs-node demo`` writes (the returned SEG over the
slice it covers most, a colour legend, the levels with findings ringed and named).
``docs/dashboard.png``: the dashboard over the demo's database, the demo's job opened, in
Debian's chromium.
``docs/ohif-seg.png`` and ``docs/ohif-sr.png``: the OHIF viewer the node serves at ``/viewer/`` on
the demo study, the returned SEG loaded over the sagittal T2 with its segments listed, and the SR
loaded with each level's region drawn and its measurements listed.

Usage (from the repository root, after ``scripts/setup``; needs chromium and npm):
``HF_HUB_OFFLINE=1 .venv/bin/python scripts/docs_pictures.py [--size standard|small]``
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import sync_playwright
from sqlalchemy import select

from pacs_node.api.app import create_app
from pacs_node.api.server import ApiServer
from pacs_node.api.tokens import Role, create_token
from pacs_node.config import Settings
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.db.tables import Study
from pacs_node.service import DeferredQueue
from worker.main import main as pacs_node

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
VIEWER_DIR = ROOT / "vendor" / "ohif" / "dist"
CHROMIUM = "/usr/bin/chromium"
LOAD_MS = 120_000


def screenshot_dashboard(demo: Path, out: Path) -> None:
    """Serve the admin API over the demo's database and screenshot its job, opened."""
    database_url = f"sqlite:///{demo / 'pacs-node.db'}"
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        _, secret = create_token(session, "docs", Role.VIEWER)
    settings = Settings(database_url=database_url, spool_dir=demo / "spool", min_free_bytes=0)
    server = ApiServer.start(create_app(settings, sessions, queue=DeferredQueue()), "127.0.0.1", 0)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{server.port}/")
            page.fill("#token", secret)
            page.click("#login button")
            page.locator("#jobs tbody tr").first.click()
            page.wait_for_function(
                "() => { const i = document.querySelector('#overlay');"
                " return i.complete && i.naturalWidth > 0; }"
            )
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    finally:
        server.stop()
        engine.dispose()


def screenshot_ohif(demo: Path, out: Path) -> None:
    """Serve the node's API and OHIF over the demo's database; into ``out``, screenshot the demo
    study with its SEG loaded and the segments listed, at the L4/L5 disc (``ohif-seg.png``), then
    with its SR loaded and the level measurements listed (``ohif-sr.png``)."""
    database_url = f"sqlite:///{demo / 'pacs-node.db'}"
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        _, secret = create_token(session, "docs-ohif", Role.VIEWER)
        study_uid = session.scalars(select(Study.study_instance_uid)).one()
    settings = Settings(
        database_url=database_url,
        spool_dir=demo / "spool",
        min_free_bytes=0,
        viewer_dir=VIEWER_DIR,
    )
    server = ApiServer.start(create_app(settings, sessions, queue=DeferredQueue()), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.port}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.request.post(
                base + "/api/viewer-session", headers={"Authorization": f"Bearer {secret}"}
            )
            page = context.new_page()
            page.set_default_timeout(LOAD_MS)
            page.goto(f"{base}/viewer/viewer?StudyInstanceUIDs={study_uid}")
            page.get_by_text("SEG", exact=True).first.dblclick()
            page.get_by_role("button", name="Yes", exact=True).click()
            page.click("[data-cy=panelSegmentation-btn]")
            page.locator("[data-cy=data-row-title]").filter(has_text="L4/L5").click()
            page.wait_for_load_state("networkidle")
            page.mouse.move(0, 899)  # away from the list: no hover card over the image
            page.screenshot(path=str(out / "ohif-seg.png"))
            page.get_by_text("SR", exact=True).first.dblclick()
            with contextlib.suppress(PlaywrightTimeoutError):  # "continue tracking?" prompt
                page.get_by_role("button", name="Yes", exact=True).click(timeout=15_000)
            page.click("[data-cy=trackedMeasurements-btn]")
            panel = page.locator("[data-cy=trackedMeasurements-panel]").first
            panel.get_by_text("L4/L5").first.wait_for()
            page.wait_for_load_state("networkidle")
            page.mouse.move(0, 899)
            page.screenshot(path=str(out / "ohif-sr.png"))
            browser.close()
    finally:
        server.stop()
        engine.dispose()


def main() -> int:
    """Run the demo, then write the pictures into ``docs/``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["standard", "small"], default="standard")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pacs-node-docs-") as folder:
        demo = Path(folder)
        status = pacs_node(["demo", "--size", args.size, "--keep", str(demo)])
        if status != 0:
            print("the demo failed; pictures not redrawn", file=sys.stderr)
            return status
        shutil.copyfile(demo / "overlay.png", DOCS / "result-overlay.png")
        screenshot_dashboard(demo, DOCS / "dashboard.png")
        screenshot_ohif(demo, DOCS)
    print(f"wrote result-overlay.png, dashboard.png, ohif-seg.png and ohif-sr.png in {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
