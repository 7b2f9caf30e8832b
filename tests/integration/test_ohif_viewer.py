"""The node's results in the real OHIF viewer, served by the node at ``/viewer/``, in Debian's
chromium (headless, driven by Playwright).

A real ``pacs-node serve`` analyses a phantom study with the shipped model. From the dashboard,
with a viewer token, "Open in viewer" opens OHIF in a new tab on a viewer session (a cookie);
OHIF reads the node's DICOMweb, shows the study, the SEG's segments by label and the SR's
measurements, without an error dialog.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
import pytest

from bench.e2e.harness import DCMTK_ENV, STORESCU
from tests.helpers.browser import CHROMIUM, chromium
from tests.helpers.node_process import NodeProcess, run_node
from tests.helpers.orthanc import wait_until
from worker.commands.phantom import write_phantom

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VIEWER_DIR = Path(__file__).resolve().parents[2] / "vendor" / "ohif" / "dist"
if not CHROMIUM.exists():
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)
if not (VIEWER_DIR / "index.html").exists():
    pytest.skip("OHIF is not installed (scripts/setup, with npm)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

LOAD_MS = 120_000
"""Generous: OHIF's first load parses about 20 MB of scripts on a busy 2-core machine."""
ERROR_TEXTS = ("Something went wrong", "Error Message", "Cannot read properties")


@dataclass(frozen=True)
class Analysed:
    """A node that has analysed one study, and a viewer token for it."""

    node: NodeProcess
    token: str
    study_uid: str
    job_id: int
    segment_labels: list[str]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Analysed]:
    workdir = tmp_path_factory.mktemp("ohif")
    study = write_phantom(3, workdir / "study", size="small")
    with run_node(
        workdir / "node",
        device="cpu",
        quiet_seconds="3",
        release_grace_seconds="1",
        viewer_dir=str(VIEWER_DIR),
    ) as node:
        files = sorted(str(p) for p in (workdir / "study").rglob("*.dcm"))
        subprocess.run(
            [
                STORESCU,
                "-aet",
                "MODALITY",
                "-aec",
                "LUMBAR_NODE",
                "127.0.0.1",
                str(node.port),
                *files,
            ],
            env=DCMTK_ENV,
            check=True,
            capture_output=True,
            timeout=120,
        )
        wait_until(
            lambda: node.query("SELECT state FROM jobs") == [("done",)],
            300,
            f"the study analysed\n{node.log.read_text()}",
        )
        ((job_id, seg_path),) = node.query("SELECT job_id, path FROM results WHERE kind = 'seg'")
        seg = pydicom.dcmread(node.log.parent / "spool" / str(seg_path), stop_before_pixels=True)
        token = subprocess.run(
            [sys.executable, "-m", "worker.main", "tokens", "create", "ohif", "--role", "viewer"],
            env={**os.environ, **node.env},
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[-1]
        yield Analysed(
            node,
            token,
            study.study_instance_uid,
            int(str(job_id)),
            [str(s.SegmentLabel) for s in seg.SegmentSequence],
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_api.sync_playwright() as playwright, chromium(playwright) as launched:
        yield launched


class Viewer:
    """OHIF in a tab opened from the dashboard, with the page errors it raised."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.set_default_timeout(LOAD_MS)

    def open_series(self, modality: str) -> None:
        """Double-click the thumbnail of the study's ``modality`` series, once the viewport has
        loaded what it shows: OHIF 3.13 fails a render still under way on a viewport it replaces."""
        self.page.wait_for_load_state("networkidle")
        thumbnail = self.page.get_by_text(modality, exact=True).first
        thumbnail.wait_for()
        thumbnail.dblclick()

    def assert_no_error(self) -> None:
        body = self.page.inner_text("body")
        assert not [text for text in ERROR_TEXTS if text in body]
        assert self.page.locator("[data-sonner-toast][data-type=error]").count() == 0
        assert self.errors == []


@pytest.fixture
def viewer(browser: Browser, analysed: Analysed) -> Iterator[Viewer]:
    """The dashboard with the viewer token, the job opened, then "Open in viewer"."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        dashboard = context.new_page()
        dashboard.goto(analysed.node.api_url + "/")
        dashboard.fill("#token", analysed.token)
        dashboard.click("#login button")
        dashboard.locator(f"#jobs tr[data-job-id='{analysed.job_id}']").click()
        dashboard.locator("#detail-title").filter(has_text=f"Job {analysed.job_id}").wait_for()
        with context.expect_page() as opened:
            dashboard.click("#open-viewer")
        page = opened.value
        assert page.url.endswith(f"/viewer/viewer?StudyInstanceUIDs={analysed.study_uid}")
        cookie = next(c for c in context.cookies() if c["name"] == "pacs_node_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        yield Viewer(page)
    finally:
        context.close()


def test_ohif_shows_the_study_and_the_seg_segments_by_label(
    viewer: Viewer, analysed: Analysed
) -> None:
    page = viewer.page
    for series in ("t2_tse_sag", "SEG", "SR"):
        page.get_by_text(series, exact=True).first.wait_for()
    viewer.open_series("SEG")
    page.get_by_role("button", name="Yes", exact=True).click()  # "Open this Segmentation?"
    page.click("[data-cy=panelSegmentation-btn]")
    titles = page.locator("[data-cy=data-row-title]")
    page.wait_for_function(
        "n => document.querySelectorAll('[data-cy=data-row-title]').length >= n",
        arg=min(10, len(analysed.segment_labels)),
    )
    shown = set(titles.all_inner_texts())
    assert len(shown & set(analysed.segment_labels)) >= 10, (shown, analysed.segment_labels)
    viewer.assert_no_error()


def test_ohif_shows_the_sr_without_an_error(viewer: Viewer) -> None:
    """The SR's level regions (SCOORD) are drawn over the sagittal T2 they reference."""
    page = viewer.page
    viewer.open_series("SR")
    page.locator("[data-cy=viewport-pane]").get_by_text("SR", exact=True).wait_for()
    page.wait_for_function(
        "() => document.querySelectorAll('[data-cy=viewport-pane] svg text').length > 0"
    )
    viewer.assert_no_error()


def test_ohif_lists_the_sr_measurements_by_level(viewer: Viewer) -> None:
    """Each level's region is a rectangle (a closed 5-point POLYLINE), which OHIF hydrates as
    its rectangle tool and lists under the level's tracking identifier."""
    page = viewer.page
    viewer.open_series("SR")
    page.locator("[data-cy=viewport-pane]").get_by_text("SR", exact=True).wait_for()
    # OHIF asks whether to track the SR's measurements (only for an SR it can hydrate). Answer
    # once the SR viewport has drawn its regions: hydrating replaces that viewport, and OHIF
    # 3.13 fails a render still under way on the one it destroys.
    page.wait_for_function(
        "() => document.querySelectorAll('[data-cy=viewport-pane] svg text').length > 0"
    )
    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Yes", exact=True).click()
    page.wait_for_load_state("networkidle")
    page.click("[data-cy=trackedMeasurements-btn]")
    panel = page.locator("[data-cy=trackedMeasurements-panel]").first
    panel.get_by_text("L4/L5").first.wait_for(timeout=60_000)
    viewer.assert_no_error()
