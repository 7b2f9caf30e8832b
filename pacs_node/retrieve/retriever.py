"""Fetching studies from a source, recorded and audited: find them by accession number or Study
Instance UID, have them sent to the node, and ask for their completion so they are analysed on
arrival.

C-MOVE sends the study to the node's own AE title, so the node's SCP (``pacs-node serve``) must
be running and known to the source under that AE title; C-GET (a source flagged ``/get``)
receives it over the node's own association and stores it exactly as the SCP does. Either way the
study then completes like any other and its job records the trigger (``retrieved``, or ``prior``)
and who asked (:mod:`pacs_node.assembly`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.config import Settings
from pacs_node.db.admin_actions import record_audit
from pacs_node.db.ledger import InstanceLedger
from pacs_node.db.retrievals import finish_retrieval, start_retrieval
from pacs_node.db.tables import Job, Retrieval, Study
from pacs_node.domain import RetrievalPurpose, RetrievalState, StudyStatus
from pacs_node.errors import NodeError, StudyIncompleteError
from pacs_node.instance_store import InstanceStore
from pacs_node.retrieve.scu import (
    RetrieveOutcome,
    StudyMatch,
    find_studies,
    get_study,
    move_study,
)
from pacs_node.scp.handlers import Associations, handle_store
from pacs_node.sources import RetrieveMethod, Source
from pacs_node.spool import Spool
from pacs_node.validation import validate_uid

LOG = logging.getLogger(__name__)
MAX_ACCESSION_CHARS = 16


class RetrieveRequestError(NodeError, ValueError):
    """The request names no configured source, or neither or both of accession and UID."""


class NothingFoundError(NodeError, LookupError):
    """The source holds no study matching the request."""


@dataclass(frozen=True)
class Fetched:
    """What fetching one study achieved: the retrieval row, the source's outcome, and the job
    the study has (None until its completion creates one)."""

    retrieval_id: int
    outcome: RetrieveOutcome
    job_id: int | None
    already_held: bool


class Retriever:
    """Finds and fetches studies from the configured sources into the node."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        spool: Spool,
        complete: Callable[[str], None],
    ) -> None:
        """``complete`` asks for a study's completion (``StudyAssembler.force_complete``)."""
        self._settings = settings
        self._sessions = sessions
        self._spool = spool
        self._complete = complete

    def source(self, name: str) -> Source:
        """The configured source called ``name``.

        Raises:
            RetrieveRequestError: if there is none.
        """
        source = self._settings.source_registry.named(name)
        if source is None:
            known = ", ".join(s.name for s in self._settings.sources) or "none configured"
            raise RetrieveRequestError(f"no source named {name!r} ({known})")
        return source

    def find(self, source: Source, **keys: str) -> list[StudyMatch]:
        """C-FIND the source for studies matching ``keys``.

        Raises:
            SourceUnavailableError: if the source cannot be queried.
        """
        return find_studies(
            source,
            calling_ae=self._settings.ae_title,
            timeout=self._settings.network_timeout,
            **keys,
        )

    def request(
        self, source_name: str, *, accession: str | None = None, study_uid: str | None = None
    ) -> tuple[Source, list[StudyMatch]]:
        """Check a request and find its study (or studies) on the source.

        Raises:
            RetrieveRequestError: if the request is malformed or names no configured source.
            NothingFoundError: if the source holds no such study.
            SourceUnavailableError: if the source cannot be queried.
        """
        source = self.source(source_name)
        matches = self.find(source, **_match_keys(accession, study_uid))
        if not matches:
            raise NothingFoundError(f"source {source.name} holds no such study")
        return source, matches

    def retrieve(
        self,
        source_name: str,
        *,
        accession: str | None = None,
        study_uid: str | None = None,
        requested_by: str,
        remote_address: str | None = None,
    ) -> list[Fetched]:
        """Find the study (or studies) of an accession number or a Study Instance UID on a
        source, audit the request and fetch each study.

        Raises:
            RetrieveRequestError: if the request is malformed or names no configured source.
            NothingFoundError: if the source holds no such study.
            SourceUnavailableError: if the source cannot be queried.
        """
        source, matches = self.request(source_name, accession=accession, study_uid=study_uid)
        started = self.start_audited(
            source, matches, requested_by=requested_by, remote_address=remote_address
        )
        return [self.transfer(rid, source, uid) for rid, uid in started]

    def start_audited(
        self,
        source: Source,
        matches: list[StudyMatch],
        *,
        requested_by: str,
        remote_address: str | None,
    ) -> list[tuple[int, str]]:
        """Record an on-demand retrieval per study and audit the request, in one transaction.

        Returns:
            (retrieval id, Study Instance UID) per study, to :meth:`transfer`.
        """
        with self._sessions.begin() as session:
            started = [
                (
                    start_retrieval(
                        session,
                        source=source.name,
                        study_instance_uid=m.study_instance_uid,
                        purpose=RetrievalPurpose.ON_DEMAND,
                        requested_by=requested_by,
                    ).id,
                    m.study_instance_uid,
                )
                for m in matches
            ]
            record_audit(
                session,
                actor=requested_by,
                action="retrieve",
                target=",".join(f"retrieval:{rid}" for rid, _ in started)[:128],
                remote_address=remote_address,
                details={"source": source.name, "studies": len(started)},
            )
        return started

    def fetch(
        self,
        source: Source,
        study_uid: str,
        purpose: RetrievalPurpose,
        requested_by: str,
        for_job_id: int | None = None,
    ) -> Fetched:
        """Record a retrieval of one study and fetch it (:meth:`transfer`).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """
        with self._sessions.begin() as session:
            retrieval_id = start_retrieval(
                session,
                source=source.name,
                study_instance_uid=study_uid,
                purpose=purpose,
                requested_by=requested_by,
                for_job_id=for_job_id,
            ).id
        return self.transfer(retrieval_id, source, study_uid)

    def transfer(self, retrieval_id: int, source: Source, study_uid: str) -> Fetched:
        """Have a recorded retrieval's study sent to the node and ask for its completion.

        A study whose every instance the node already held is not analysed again: the result
        names its latest job.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """
        LOG.info("retrieval %d: fetching a study from %s", retrieval_id, source)
        outcome = self._transfer(source, study_uid)
        already_held = False
        if outcome.completed or outcome.warning:
            try:
                self._complete(study_uid)
            except StudyIncompleteError:
                already_held = True  # every instance was a repeat: the study is not receiving
        state = RetrievalState.RETRIEVED if outcome.succeeded else RetrievalState.FAILED
        with self._sessions.begin() as session:
            finish_retrieval(
                session,
                retrieval_id,
                state=state,
                counts=(outcome.completed, outcome.failed, outcome.warning),
                status=None if outcome.status is None else f"0x{outcome.status:04X}",
                reason=outcome.error or _partial(outcome),
            )
            job_id = _held_job(session, retrieval_id, study_uid) if already_held else None
        LOG.info(
            "retrieval %d: %s (%d sent, %d failed, %d warnings)%s",
            retrieval_id,
            state.value,
            outcome.completed,
            outcome.failed,
            outcome.warning,
            f": {outcome.error}" if outcome.error else "",
        )
        return Fetched(retrieval_id, outcome, job_id, already_held)

    def _transfer(self, source: Source, study_uid: str) -> RetrieveOutcome:
        """C-MOVE the study to the node, or C-GET it and store it as the SCP would."""
        settings = self._settings
        if source.method is RetrieveMethod.MOVE:
            return move_study(
                source, study_uid, calling_ae=settings.ae_title, timeout=settings.network_timeout
            )
        ledger = InstanceLedger(self._sessions)
        associations = Associations()
        store = partial(
            handle_store,
            spool=self._spool,
            store=InstanceStore(self._spool, ledger),
            ledger=ledger,
            associations=associations,
        )
        return get_study(
            source,
            study_uid,
            calling_ae=settings.ae_title,
            timeout=settings.network_timeout,
            on_store=store,
            on_released=lambda assoc: ledger.mark_released(associations.pop(assoc)[0]),
        )


def _match_keys(accession: str | None, study_uid: str | None) -> dict[str, str]:
    """The C-FIND keys of a request by accession number or by Study Instance UID.

    Raises:
        RetrieveRequestError: if neither or both are given, or one is malformed.
    """
    if (accession is None) == (study_uid is None):
        raise RetrieveRequestError("give either an accession number or a Study Instance UID")
    if study_uid is not None:
        try:
            validate_uid(study_uid, "Study Instance UID")
        except ValueError as exc:
            raise RetrieveRequestError(str(exc)) from exc
        return {"StudyInstanceUID": study_uid}
    assert accession is not None
    if not accession.strip() or len(accession) > MAX_ACCESSION_CHARS:
        raise RetrieveRequestError(f"an accession number is 1-{MAX_ACCESSION_CHARS} characters")
    if not accession.isprintable() or any(c in accession for c in "\\*?"):
        raise RetrieveRequestError("an accession number may not hold \\, * or ? (no wildcards)")
    return {"AccessionNumber": accession}


def _partial(outcome: RetrieveOutcome) -> str | None:
    if outcome.failed:
        return f"the source could not send {outcome.failed} instance(s)"
    return None


def _held_job(session: Session, retrieval_id: int, study_uid: str) -> int | None:
    """Link a retrieval that brought nothing new to the study's latest job, and return it."""
    job_id = session.scalar(
        select(Job.id)
        .join(Study, Study.id == Job.study_id)
        .where(Study.study_instance_uid == study_uid, Study.status != StudyStatus.RECEIVING)
        .order_by(Job.version.desc())
        .limit(1)
    )
    retrieval = session.get(Retrieval, retrieval_id)
    if retrieval is not None:
        retrieval.job_id = job_id
    return job_id
