"""A worker's job steps, shared by the Celery tasks and the embedded mode.

:meth:`JobRunner.analyse` is the ``gpu`` queue's step (:class:`~worker.analysis.AnalysisStage`:
claim under a lease, run the model or report why not, store results with their deterministic
identities and their deliveries, all before anything is sent); :meth:`JobRunner.deliver` is the
``io`` queue's step (:class:`~worker.delivery.DeliveryStage`: deliver, then notify).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from pacs_node.config import Settings
from pacs_node.domain import JobState
from pacs_node.queue import WorkQueue
from pacs_node.spool import Spool
from worker.analysis import AnalysisStage, LoadedModel
from worker.delivery import DeliveryStage
from worker.pipeline import Predictor


@dataclass
class JobRunner:
    """Runs job steps against one database, spool and queue, with a lazily loaded model."""

    settings: Settings
    sessions: sessionmaker[Session]
    spool: Spool
    queue: WorkQueue
    predictor_factory: Callable[[], Predictor]
    _model: LoadedModel = field(init=False)

    def __post_init__(self) -> None:
        self._model = LoadedModel(lambda: self.predictor_factory())

    def predictor(self) -> Predictor:
        """The model, loaded on first use and kept for later jobs.

        Raises:
            Exception: whatever loading the model raises.
        """
        return self._model.get()

    def analyse(self, job_id: int) -> bool:
        """Analyse a queued job (see :meth:`AnalysisStage.run`).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """
        stage = AnalysisStage(self.settings, self.sessions, self.spool, self.queue, self._model)
        return stage.run(job_id)

    def deliver(self, job_id: int) -> JobState | None:
        """Deliver and notify a job's results (see :meth:`DeliveryStage.run`).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
            OSError: if a stored result file cannot be read.
        """
        return DeliveryStage(self.settings, self.sessions, self.spool).run(job_id)
