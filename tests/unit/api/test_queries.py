"""Job history filters, keyset pagination, job detail and statistics, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.db import queries
from pacs_node.db.queries import JobFilters, list_jobs
from pacs_node.db.tables import Delivery, Instance, Series
from pacs_node.domain import JobState
from pacs_node.errors import InvalidIdentifierError
from tests.unit.api.seed import DESTINATION, HL7, T0, add_job, add_outputs, add_study


def ids(session: Session, **filters: object) -> list[int]:
    return [job.id for job in list_jobs(session, JobFilters(**filters), limit=100).items]  # type: ignore[arg-type]


def test_filters_each_select_their_jobs(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        a = add_job(session, add_study(session, 1), JobState.DONE, created=T0)
        b = add_job(
            session,
            add_study(session, 2, ae="PACS"),
            JobState.FAILED,
            created=T0 + timedelta(hours=1),
        )
        c = add_job(
            session,
            add_study(session, 3),
            JobState.QUEUED,
            created=T0 + timedelta(days=2),
            model="other",
        )
        a_id, b_id, c_id = a.id, b.id, c.id
    with sessions() as session:
        assert ids(session) == [c_id, b_id, a_id]  # newest first
        assert ids(session, states=(JobState.FAILED,)) == [b_id]
        assert ids(session, states=(JobState.FAILED, JobState.DONE)) == [b_id, a_id]
        assert ids(session, patient_id="PID0002") == [b_id]
        assert ids(session, accession_number="ACC0003") == [c_id]
        assert ids(session, study_instance_uid="1.2.826.0.1.3680043.10.1439.9.1") == [a_id]
        assert ids(session, calling_ae="PACS") == [b_id]
        assert ids(session, model_name="other") == [c_id]
        assert ids(session, created_from=T0 + timedelta(minutes=30)) == [c_id, b_id]
        assert ids(session, created_to=T0 + timedelta(hours=1)) == [a_id]  # exclusive
        assert ids(session, calling_ae="MOD", states=(JobState.QUEUED,)) == [c_id]
        assert ids(session, patient_id="nobody") == []


def test_keyset_pages_cover_every_job_once_in_order(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        for n in range(7):
            # Pairs share a creation time: the id breaks the tie.
            add_job(
                session,
                add_study(session, n),
                JobState.DONE,
                created=T0 + timedelta(minutes=n // 2),
            )
    seen: list[tuple[datetime, int]] = []
    cursor = None
    pages = 0
    with sessions() as session:
        while True:
            page = list_jobs(session, JobFilters(), limit=3, cursor=cursor)
            seen.extend((job.created_at, job.id) for job in page.items)
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    assert seen == sorted(seen, reverse=True)


def test_exactly_full_last_page_has_no_cursor(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        for n in range(2):
            add_job(
                session, add_study(session, n), JobState.DONE, created=T0 + timedelta(minutes=n)
            )
    with sessions() as session:
        assert list_jobs(session, JobFilters(), limit=2).next_cursor is None


@pytest.mark.parametrize(
    ("filters", "error"),
    [
        ({"created_from": datetime(2026, 1, 1)}, ValueError),  # naive
        ({"created_from": T0, "created_to": T0 - timedelta(days=1)}, ValueError),
        ({"study_instance_uid": "1.2.x"}, InvalidIdentifierError),
    ],
)
def test_bad_filters_are_refused(filters: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        JobFilters(**filters)  # type: ignore[arg-type]


@pytest.mark.parametrize("cursor", ["garbage", queries.encode_cursor(T0, 1)[:-3], "W10"])
def test_bad_cursor_or_limit_is_refused(sessions: sessionmaker[Session], cursor: str) -> None:
    with sessions() as session:
        with pytest.raises(ValueError, match="cursor"):
            list_jobs(session, JobFilters(), cursor=cursor)
        with pytest.raises(ValueError, match="limit"):
            list_jobs(session, JobFilters(), limit=0)


def test_cursor_round_trip() -> None:
    moment = datetime(2026, 5, 1, 12, 30, 1, 123456, tzinfo=UTC)
    assert queries.decode_cursor(queries.encode_cursor(moment, 42)) == (moment, 42)


def test_job_detail_gathers_timeline_series_results_acks_and_errors(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        study = add_study(session, 5)
        series = Series(study=study, series_instance_uid="1.2.3.4", series_number=2, role="SAG_T2")
        session.add(series)
        session.flush()
        for n in range(3):
            session.add(
                Instance(
                    series_id=series.id,
                    sop_instance_uid=f"1.2.3.4.{n}",
                    sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
                    transfer_syntax_uid="1.2.840.10008.1.2.1",
                    path=f"x/{n}.dcm",
                    size_bytes=1,
                )
            )
        job = add_job(session, study, JobState.FAILED, created=T0, reason="HL7 receiver refused")
        add_outputs(session, job)
        job_id = job.id
    with sessions() as session:
        detail = queries.job_detail(session, job_id)
        assert queries.job_detail(session, job_id + 1000) is None
    assert detail is not None
    assert detail.job.state == "failed"
    assert [e.message for e in detail.events] == ["now failed"]
    assert [(s.series_instance_uid, s.role, s.instances) for s in detail.series] == [
        ("1.2.3.4", "SAG_T2", 3)
    ]
    seg, oru = detail.results
    assert (seg.kind, seg.sop_instance_uid) == ("seg", f"2.25.{job_id}2")
    assert {(d.destination, d.state) for d in seg.deliveries} == {
        (DESTINATION, "sent"),
        ("ARCHIVE", "dead"),
    }
    assert oru.control_id == f"PN{job_id:08d}"
    assert [(a.destination, a.last_status) for a in detail.hl7_acks] == [(HL7, "AE")]
    messages = {(e.source, e.message) for e in detail.errors}
    assert ("job", "HL7 receiver refused") in messages
    assert (f"delivery hl7 {HL7}", "ACK AE: unknown patient") in messages
    assert ("delivery dicom ARCHIVE", "out of resources") in messages


def test_stats_counts_queue_depth_and_turnaround_percentiles(
    sessions: sessionmaker[Session],
) -> None:
    day1 = T0
    day2 = T0 + timedelta(days=1)
    with sessions.begin() as session:
        for n, minutes in enumerate([1, 2, 3, 4, 10]):
            add_job(session, add_study(session, n), JobState.DONE, created=day1, minutes=minutes)
        add_job(session, add_study(session, 10), JobState.FAILED, created=day1)
        add_job(session, add_study(session, 11), JobState.QUEUED, created=day2)
        job = add_job(session, add_study(session, 12), JobState.DELIVERING, created=day2)
        add_outputs(session, job)
        session.flush()
        session.query(Delivery).filter(Delivery.state == "dead").update({"state": "pending"})
        add_job(session, add_study(session, 13), JobState.DONE, created=T0 - timedelta(days=30))
    with sessions() as session:
        result = queries.stats(session, days=3, now=day2 + timedelta(hours=1))
    assert result.counts_by_state == {"done": 6, "failed": 1, "queued": 1, "delivering": 1}
    assert result.queue_depth == {"jobs_queued": 1, "jobs_running": 0, "deliveries_pending": 2}
    first, second, third = result.days
    assert first.received == 0 and first.turnaround_p50_seconds is None
    assert (second.day, second.received, second.done, second.failed) == (day1.date(), 6, 5, 1)
    assert second.turnaround_p50_seconds == 180.0
    assert second.turnaround_p95_seconds == 600.0
    assert (third.received, third.done) == (2, 0)
    with sessions() as session, pytest.raises(ValueError):
        queries.stats(session, days=0)


def test_percentile_nearest_rank() -> None:
    assert queries.percentile([], 50) is None
    assert queries.percentile([5.0], 95) == 5.0
    assert queries.percentile([float(v) for v in range(1, 101)], 95) == 95.0
    assert queries.percentile([3.0, 1.0, 2.0], 50) == 2.0
    with pytest.raises(ValueError):
        queries.percentile([1.0], 101)
