"""The Celery app's contract: JSON only, late acks, rejection on worker loss, prefetch 1, queues."""

from __future__ import annotations

import pytest

from pacs_node.config import Settings
from pacs_node.policy import JobPolicy
from pacs_node.queue import ANALYSE_TASK, DELIVER_TASK
from worker.celery_app import create_app
from worker.commands.worker import main


def test_app_configuration_and_tasks() -> None:
    policy = JobPolicy(job_timeout_seconds=100)
    app = create_app(Settings(broker_url="redis://127.0.0.1:1/0", policy=policy))
    conf = app.conf
    assert (conf.task_serializer, conf.accept_content) == ("json", ["json"])
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert {q.name for q in conf.task_queues} == {"gpu", "io"}
    assert conf.task_routes[ANALYSE_TASK] == {"queue": "gpu"}
    assert conf.task_routes[DELIVER_TASK] == {"queue": "io"}
    analyse = app.tasks[ANALYSE_TASK]
    assert analyse.acks_late and analyse.time_limit == 160
    assert DELIVER_TASK in app.tasks


def test_embedded_settings_have_no_worker(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="embedded"):
        create_app(Settings())
    assert main(["--queues", "cpu"]) == 2
    assert "--queues" in capsys.readouterr().err
