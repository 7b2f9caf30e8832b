"""Prometheus metrics: database counts at scrape time, in-process instruments, fixed labels."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.db.jobs import add_event
from pacs_node.db.tables import Delivery, Job
from pacs_node.domain import JobState
from pacs_node.metrics import NodeMetrics
from tests.unit.api.seed import T0, add_job, add_outputs, add_study


def samples(metrics: NodeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_database_counts_are_read_at_each_scrape(sessions: sessionmaker[Session]) -> None:
    metrics = NodeMetrics(sessions)
    assert samples(metrics)[("pacs_node_jobs", (("state", "failed"),))] == 0
    with sessions.begin() as session:
        job = add_job(session, add_study(session, 1), JobState.FAILED, created=T0)
        add_outputs(session, job)
        add_job(session, add_study(session, 2), JobState.QUEUED, created=T0)
        session.add_all(
            [
                Delivery(job_id=job.id, result_id=1, channel="dicom", destination="A@b:1",
                         state="pending"),
                Delivery(job_id=job.id, result_id=2, channel="hl7", destination="c:2",
                         state="pending", attempts=2),
            ]
        )  # fmt: skip
    values = samples(metrics)
    assert values[("pacs_node_jobs", (("state", "failed"),))] == 1
    assert values[("pacs_node_jobs", (("state", "queued"),))] == 1
    assert values[("pacs_node_queue_depth", (("queue", "jobs_queued"),))] == 1
    assert values[("pacs_node_queue_depth", (("queue", "deliveries_pending"),))] == 2
    assert values[("pacs_node_deliveries", (("channel", "hl7"), ("state", "dead")))] == 1
    assert values[("pacs_node_studies_completed_total", ())] == 2
    assert values[("pacs_node_instances_received_total", (("origin", "source"),))] == 0
    assert values[("pacs_node_instance_copies_ignored_total", ())] == 0
    retrying = ("pacs_node_deliveries_retrying", (("channel", "hl7"),))
    assert values[retrying] == 1
    assert ("pacs_node_deliveries_retrying", (("channel", "dicom"),)) not in values  # 0 attempts


def test_stage_and_inference_histograms_are_fed_from_job_event_timings(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        job = add_job(session, add_study(session, 1), JobState.DONE, created=T0)
        add_event(session, job, "before the process started", {"timings": {"inference": 99.0}})
    metrics = NodeMetrics(sessions)
    metrics.render()  # notes where the event log ends: history is not replayed
    with sessions.begin() as session:
        job = session.get(Job, job.id)
        assert job is not None
        add_event(session, job, "analysed", {"timings": {"load": 0.5, "inference": 1.5}})
        add_event(session, job, "deliver complete", {"timings": {"deliver": 40.0}})
        add_event(session, job, "odd", {"timings": {"Doe^John": 1.0, "notify": "n/a"}})
        add_event(session, job, "no timings")
    values = samples(metrics)
    count = "pacs_node_stage_duration_seconds_count"
    assert values[(count, (("stage", "inference"),))] == 1
    assert values[(count, (("stage", "load"),))] == 1
    assert values[(count, (("stage", "deliver"),))] == 1
    assert values[("pacs_node_stage_duration_seconds_sum", (("stage", "deliver"),))] == 40.0
    assert values[("pacs_node_model_inference_seconds_sum", ())] == 1.5
    assert not any("Doe" in str(labels) for _, labels in values)  # labels stay identifiers
    assert not any(("stage", "notify") in labels for _, labels in values)
    assert samples(metrics)[(count, (("stage", "inference"),))] == 1  # each event read once


@pytest.mark.parametrize("stage", ["1.2.840.113619.2", "Doe^John", ""])
def test_labels_stay_a_vocabulary(stage: str) -> None:
    with pytest.raises(ValueError):
        NodeMetrics().observe_stage(stage, 1.0)
