"""The dashboard in a real browser (Debian's chromium, headless): load, filter, open, overlay,
review.

(The documentation's screenshot comes from a real demo run: ``scripts/docs_pictures.py``.)
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.api.app import create_app
from pacs_node.api.server import ApiServer
from pacs_node.api.tokens import Role, create_token
from pacs_node.config import Settings
from pacs_node.db.base import utcnow
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.db.tables import Feedback, Job
from pacs_node.domain import JobState
from tests.helpers.browser import CHROMIUM, chromium
from tests.unit.api.conftest import RecordingQueue
from tests.unit.api.seed import add_job, add_outputs, add_study, seg_job
from tests.unit.api.test_feedback import add_sr

pytestmark = pytest.mark.integration

if not CHROMIUM.exists():
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

STATES = [JobState.DONE] * 6 + [JobState.FAILED, JobState.QUEUED, JobState.RUNNING]
N_JOBS = 40
N_FAILED = sum(STATES[n % len(STATES)] is JobState.FAILED for n in range(N_JOBS))
REVIEW_REASONS = ("only 3 of 5 lumbar discs found", "sacrum not in view")
"""The model's quality check of the third job: low confidence, review."""


def seed(sessions: sessionmaker[Session], spool: Path) -> tuple[int, int]:
    """Two weeks of jobs, one with a real SEG; return (SEG job id, a running job id)."""
    now = utcnow()
    running = 0
    with sessions.begin() as session:
        for n in range(N_JOBS):
            state = STATES[n % len(STATES)]
            created = now - timedelta(hours=8 * n + 1)
            job = add_job(
                session,
                add_study(session, n, ae="MRI_3T" if n % 3 else "PACS"),
                state,
                created=created,
                minutes=4 + (n * 7) % 11,
                reason="HL7 receiver refused" if state is JobState.FAILED else None,
                review_reasons=REVIEW_REASONS if n == 2 else (),
            )
            if state in (JobState.DONE, JobState.FAILED):
                add_outputs(session, job)
            if state is JobState.RUNNING:
                running = job.id
    job_id = seg_job(sessions, spool)
    with sessions.begin() as session:
        session.execute(update(Job).where(Job.id == job_id).values(created_at=now))
    return job_id, running


@pytest.fixture
def dashboard(
    postgres_url: str, tmp_path: Path
) -> Iterator[tuple[str, str, sessionmaker[Session], int, int]]:
    engine = make_engine(postgres_url)
    sessions = make_session_factory(engine)
    spool = tmp_path / "spool"
    spool.mkdir()
    seg_id, running_id = seed(sessions, spool)
    add_sr(sessions, spool, seg_id)
    with sessions.begin() as session:
        _, secret = create_token(session, "browser", Role.ADMIN)
    settings = Settings(database_url=postgres_url, spool_dir=spool, min_free_bytes=0)
    app = create_app(settings, sessions, queue=RecordingQueue(sessions))
    server = ApiServer.start(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.port}", secret, sessions, seg_id, running_id
    finally:
        server.stop()
        engine.dispose()


def test_dashboard_load_filter_open_overlay_and_live_update(
    dashboard: tuple[str, str, sessionmaker[Session], int, int], tmp_path: Path
) -> None:
    base, secret, sessions, seg_id, running_id = dashboard
    with sync_api.sync_playwright() as playwright, chromium(playwright) as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base + "/")
        page.fill("#token", secret)
        page.click("#login button")
        rows = page.locator("#jobs tbody tr")
        rows.first.wait_for()
        assert rows.count() == N_JOBS + 1
        page.locator("#chart rect").nth(27).wait_for()  # the stats arrive on their own request
        assert page.locator("#chart rect").count() == 28  # 14 days x (received, done)
        assert "failed" in page.locator("#counts").inner_text()
        # The job the model doubts carries a "review" marker with its reasons; the others passed.
        markers = page.locator("#jobs tbody tr .review")
        assert markers.count() == 1 and markers.inner_text() == "review"
        doubted = rows.filter(has=page.locator(".review"))
        assert "only 3 of 5 lumbar discs found; sacrum not in view" in doubted.inner_text()
        assert (
            page.locator("#jobs tbody tr .quality").filter(has_text="passed").count() == N_JOBS - 1
        )

        # Filter: failed jobs only, then one accession.
        page.select_option("#filters select[name=state]", "failed")
        page.click("#filters button")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#jobs tbody tr .state')]"
            ".every(s => s.textContent === 'failed')"
        )
        assert rows.count() == N_FAILED
        page.select_option("#filters select[name=state]", "")
        page.fill("#filters input[name=accession_number]", "ACCSEG")
        page.click("#filters button")
        page.wait_for_function("() => document.querySelectorAll('#jobs tbody tr').length === 1")

        # Open the job: timeline, series, overlay.
        rows.first.click()
        page.locator("#detail-title").filter(has_text=f"Job {seg_id}").wait_for()
        assert page.locator("#timeline li").count() >= 1
        assert "SAG_T2" in page.locator("#series").inner_text()
        page.wait_for_function(
            "() => { const i = document.querySelector('#overlay');"
            " return i.complete && i.naturalWidth >= 384; }"
        )
        review(page, sessions, seg_id)
        page.fill("#filters input[name=accession_number]", "")
        page.click("#filters button")
        page.wait_for_function("() => document.querySelectorAll('#jobs tbody tr').length > 1")
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        assert (tmp_path / "dashboard.png").read_bytes()[:4] == b"\x89PNG"

        # Live update: a state change in the database shows without a reload.
        with sessions.begin() as session:
            session.execute(update(Job).where(Job.id == running_id).values(state="done"))
        row = f"#jobs tr[data-job-id='{running_id}'] .state"
        page.wait_for_function(
            f"() => document.querySelector(\"{row}\")?.textContent === 'done'",
            timeout=15_000,
        )
        assert errors == []


def review(page: Any, sessions: sessionmaker[Session], job_id: int) -> None:
    """Amend a finding and accept the segmentation in the job's detail; both reach the database
    and show in the study's feedback and the agreement panel."""
    bulge = page.locator("#review tr[data-subject='L4/L5 disc_bulge']")
    bulge.wait_for()
    assert "present" in bulge.inner_text()
    page.fill("#review-comment", "no bulge on the axial images")
    bulge.get_by_role("button", name="Amend: absent").click()
    page.locator("#review tr[data-subject='segmentation']").get_by_role(
        "button", name="Accept"
    ).click()
    page.locator("#feedback tbody tr").nth(2).wait_for()  # header and two verdicts
    assert "browser" in page.locator("#feedback").inner_text()
    page.wait_for_function(
        "() => document.querySelector('#agreement').textContent.includes('lumbarclip-atto')"
    )
    with sessions() as session:
        rows = session.execute(
            select(Feedback.subject, Feedback.verdict, Feedback.amended_value, Feedback.given_by)
            .where(Feedback.job_id == job_id)
            .order_by(Feedback.id)
        ).all()
    assert [tuple(row) for row in rows] == [
        ("finding", "amend", "absent", "browser"),
        ("segmentation", "accept", None, "browser"),
    ]
