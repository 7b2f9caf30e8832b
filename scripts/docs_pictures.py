"""Redraw the README's pictures from a real demo run with the shipped checkpoint.

``docs/result-overlay.png``: the overlay ``pacs-node demo`` writes (the returned SEG over the
slice it covers most, a colour legend, the levels with findings ringed and named).
``docs/dashboard.png``: the dashboard over the demo's database, the demo's job opened, in
Debian's chromium.

Usage (from the repository root, after ``scripts/setup``; needs chromium):
``HF_HUB_OFFLINE=1 .venv/bin/python scripts/docs_pictures.py [--size standard|small]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from pacs_node.api.app import create_app
from pacs_node.api.server import ApiServer
from pacs_node.api.tokens import Role, create_token
from pacs_node.config import Settings
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.service import DeferredQueue
from worker.main import main as pacs_node

DOCS = Path(__file__).resolve().parents[1] / "docs"
CHROMIUM = "/usr/bin/chromium"


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


def main() -> int:
    """Run the demo, then write both pictures into ``docs/``."""
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
    print(f"wrote {DOCS / 'result-overlay.png'} and {DOCS / 'dashboard.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
