"""Storage commitment (Push Model, PS3.4 Annex J): ask a PACS to commit what it stored.

After the C-STOREs to a destination flagged ``/commit``, the sender records the request
(:class:`CommitmentJournal`), then sends one N-ACTION (action type 1) with a fresh Transaction UID
and the Referenced SOP Sequence of the stored objects. The PACS answers later with an
N-EVENT-REPORT (event type 1: all committed; 2: some failed, in the Failed SOP Sequence), on the
same association if it is still open or, usually, on a new one it opens to the node's SCP. Either
way the report goes to the journal, which settles the deliveries it names.

The request is recorded before the N-ACTION goes out, so a report that comes back at once always
finds its deliveries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydicom import Dataset
from pydicom.uid import generate_uid
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
)
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.db.deliveries import apply_commitment_report, mark_committing
from pacs_node.policy import JobPolicy

LOG = logging.getLogger(__name__)

REQUEST_COMMITMENT = 1
"""N-ACTION Action Type ID: Request Storage Commitment."""
ALL_COMMITTED = 1
"""N-EVENT-REPORT Event Type ID: Storage Commitment Request Successful."""
FAILURES_EXIST = 2
"""N-EVENT-REPORT Event Type ID: Storage Commitment Request Complete - Failures Exist."""
SUCCESS = 0x0000
REACTOR_SETTLE_SECONDS = 0.01
"""Pause before the N-ACTION that follows the last C-STORE at once: pynetdicom's reactor thread,
woken by the end of the previous request, may otherwise still look paused and take the
N-ACTION's response off the queue (pydicom/pynetdicom#875: "Received unexpected ... message")."""
INVALID_ARGUMENT_VALUE = 0x0115
PROCESSING_FAILURE = 0x0110


class ReportError(ValueError):
    """An N-EVENT-REPORT that is not a storage commitment result (the message quotes no UID)."""


@dataclass(frozen=True)
class CommitmentReport:
    """What a PACS reported for one storage commitment request.

    Attributes:
        transaction_uid: The request's Transaction UID.
        committed: SOP Instance UIDs the PACS committed to keep.
        failed: SOP Instance UIDs it did not commit, with its Failure Reason.
    """

    transaction_uid: str
    committed: frozenset[str] = frozenset()
    failed: Mapping[str, int] = field(default_factory=dict)


class CommitmentJournal(Protocol):
    """Where storage commitment requests and reports are recorded."""

    def requested(
        self, destination: str, transaction_uid: str, sop_instance_uids: Sequence[str]
    ) -> None:
        """Record that ``destination`` is asked to commit these stored objects.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """

    def reported(self, report: CommitmentReport) -> int:
        """Settle the deliveries ``report`` names; return how many were waiting for it.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: if the database fails.
        """


@dataclass(frozen=True)
class CommitmentLedger:
    """The journal in the database: deliveries wait ``committing`` until their report.

    Attributes:
        sessions: The node's database.
        policy: Attempt limits and backoff for objects the PACS did not commit.
        wake: Called with each job a report settled something of, after the commit (the work
            queue's ``enqueue_delivery``); None where the caller advances the job itself.
    """

    sessions: sessionmaker[Session]
    policy: JobPolicy
    wake: Callable[[int], None] | None = None

    def requested(
        self, destination: str, transaction_uid: str, sop_instance_uids: Sequence[str]
    ) -> None:
        """Move the stored objects' deliveries to ``committing`` under ``transaction_uid``."""
        with self.sessions.begin() as session:
            mark_committing(session, destination, transaction_uid, sop_instance_uids)

    def reported(self, report: CommitmentReport) -> int:
        """Settle the deliveries ``report`` names, then wake their jobs."""
        with self.sessions.begin() as session:
            settled = apply_commitment_report(
                session,
                report.transaction_uid,
                committed=report.committed,
                failed=report.failed,
                policy=self.policy,
            )
        if self.wake is not None:
            for job_id in sorted(set(settled)):
                _wake(self.wake, job_id)
        return len(settled)


def _wake(wake: Callable[[int], None], job_id: int) -> None:
    try:
        wake(job_id)
    except Exception:
        # The broker is down: the reconciler wakes the job once its deliveries are due.
        LOG.exception("could not wake job %d after a storage commitment report", job_id)


def new_transaction_uid(uid_root: str) -> str:
    """A fresh Transaction UID under the site's UID root ("" = pydicom's)."""
    return str(generate_uid(uid_root) if uid_root else generate_uid())


def action_information(transaction_uid: str, datasets: Sequence[Dataset]) -> Dataset:
    """The N-ACTION's Action Information: the Transaction UID and the objects to commit."""
    info = Dataset()
    info.TransactionUID = transaction_uid
    info.ReferencedSOPSequence = [_reference(d) for d in datasets]
    return info


def _reference(dataset: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = dataset.SOPClassUID
    item.ReferencedSOPInstanceUID = dataset.SOPInstanceUID
    return item


def supports_commitment(assoc: Association) -> bool:
    """True if the peer accepted the Storage Commitment Push Model on ``assoc``."""
    return any(cx.abstract_syntax == StorageCommitmentPushModel for cx in assoc.accepted_contexts)


def request_commitment(
    assoc: Association, transaction_uid: str, datasets: Sequence[Dataset]
) -> tuple[str | None, str | None]:
    """Send the N-ACTION asking the peer to commit ``datasets``.

    Returns:
        The peer's status (hex, None when none came back) and why the request failed (None
        when the peer accepted it).
    """
    time.sleep(REACTOR_SETTLE_SECONDS)
    try:
        status, _ = assoc.send_n_action(
            action_information(transaction_uid, datasets),
            REQUEST_COMMITMENT,
            StorageCommitmentPushModel,
            StorageCommitmentPushModelInstance,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        return None, f"storage commitment request failed: {type(exc).__name__}"
    if "Status" not in status:
        return None, "storage commitment request: no response (timeout or abort)"
    code = int(status.Status)
    if code != SUCCESS:
        return f"0x{code:04X}", "storage commitment request refused by peer"
    return f"0x{code:04X}", None


def parse_report(event_type: int, info: Dataset | None) -> CommitmentReport:
    """The report in an N-EVENT-REPORT's Event Type ID and Event Information.

    Raises:
        ReportError: if it is not a storage commitment result (wrong event type, no Transaction
            UID, an item without a SOP Instance UID).
        Exception: whatever pydicom raises for an element it cannot decode.
    """
    if event_type not in (ALL_COMMITTED, FAILURES_EXIST):
        raise ReportError(f"event type {event_type} is not a storage commitment result")
    if info is None or not info.get("TransactionUID"):
        raise ReportError("the report has no Transaction UID")
    committed = frozenset(_instance_uid(i) for i in info.get("ReferencedSOPSequence", []))
    failed = {
        _instance_uid(item): int(item.get("FailureReason", PROCESSING_FAILURE))
        for item in info.get("FailedSOPSequence", [])
    }
    return CommitmentReport(str(info.TransactionUID), committed, failed)


def _instance_uid(item: Dataset) -> str:
    uid = item.get("ReferencedSOPInstanceUID")
    if not uid:
        raise ReportError("a report item has no Referenced SOP Instance UID")
    return str(uid)


def receive_report(event: Event, journal: CommitmentJournal) -> tuple[int, Dataset | None]:
    """Handle an N-EVENT-REPORT (``evt.EVT_N_EVENT_REPORT``): settle what it names.

    Answered with success once recorded, also for a transaction the node does not know
    (logged); a report that is not a storage commitment result gets 0x0115, a database failure
    0x0110. Nothing raises into pynetdicom.
    """
    peer = f"{event.assoc.requestor.ae_title.strip()} at {event.assoc.requestor.address}"
    if event.assoc.is_requestor:
        peer = f"{event.assoc.acceptor.ae_title.strip()} at {event.assoc.acceptor.address}"
    try:
        report = parse_report(event.event_type or 0, event.event_information)
    except Exception as exc:  # not a result, or undecodable: pydicom's message may quote values
        why = exc if isinstance(exc, ReportError) else f"undecodable ({type(exc).__name__})"
        LOG.warning("storage commitment report from %s refused: %s", peer, why)
        return INVALID_ARGUMENT_VALUE, None
    try:
        settled = journal.reported(report)
    except Exception:
        LOG.exception("could not record a storage commitment report from %s", peer)
        return PROCESSING_FAILURE, None
    if settled == 0:
        LOG.warning("storage commitment report from %s names no delivery awaiting it", peer)
    else:
        LOG.info(
            "storage commitment report from %s: %d committed, %d failed",
            peer,
            len(report.committed),
            len(report.failed),
        )
    return SUCCESS, None
