"""Loading the worker's model: one torch thread on CPU, warmed up before the first job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench.e2e.harness import make_random_checkpoint
from models.inference import Predictor
from pacs_node.config import Settings
from worker.tasks import CPU_THREADS, load_predictor


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    checkpoint = make_random_checkpoint(tmp_path / "tiny.safetensors")
    return Settings(model=checkpoint, device="cpu")


@pytest.fixture
def warm_ups(monkeypatch: pytest.MonkeyPatch) -> list[Predictor]:
    """Records warm-ups instead of running them."""
    calls: list[Predictor] = []

    def warm_up(self: Predictor) -> None:
        calls.append(self)

    monkeypatch.setattr(Predictor, "warm_up", warm_up)
    return calls


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_cpu_worker_runs_one_thread_and_warms_the_model_up(
    settings: Settings, warm_ups: list[Predictor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    predictor = load_predictor(settings)
    assert torch.get_num_threads() == CPU_THREADS
    assert warm_ups == [predictor]


def test_omp_num_threads_overrides_the_worker_default(
    settings: Settings, warm_ups: list[Predictor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    load_predictor(settings)
    assert torch.get_num_threads() == 2
    assert len(warm_ups) == 1


def test_a_model_loaded_by_its_first_job_is_not_warmed_up(
    settings: Settings, warm_ups: list[Predictor]
) -> None:
    load_predictor(settings, warm_up=False)
    assert warm_ups == []


def test_warm_up_runs_a_study_through_the_tiny_model(settings: Settings) -> None:
    predictor = Predictor.load(settings.model, "cpu")
    predictor.warm_up((3, 40, 48))
    with pytest.raises(ValueError, match="empty"):
        predictor.warm_up((0, 40, 48))
