"""Deliveries: one row per result and destination (by name), with attempts and the next try.

A worker claims a due delivery with a compare-and-set that also pushes its next try into the
future, so two workers never send the same object at once and a worker that dies mid-send only
delays the retry. Failures back off exponentially (hours, for a PACS down for maintenance) and end
``dead`` after the attempt limit; an admin replay (``pacs_node.db.admin_actions``) sets them
``pending`` again and the delivery worker sends the same stored objects.

A destination flagged ``/commit`` holds a stored object ``committing`` until it reports storage
commitment (:mod:`pacs_node.dispatch.commitment`): committed, it is ``sent``; reported failed or
not reported within ``commitment_timeout_seconds``, the attempt failed like any other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from pacs_node.db.base import utcnow
from pacs_node.db.jobs import add_event
from pacs_node.db.tables import Delivery, Job, Result
from pacs_node.destinations import Destinations
from pacs_node.domain import Channel, DeliveryState, ResultKind
from pacs_node.policy import JobPolicy


def create_deliveries(
    session: Session, job_id: int, results: Sequence[Result], destinations: Destinations
) -> list[Delivery]:
    """Add a pending delivery for each result to each destination that takes its kind.

    Every DICOM destination gets the SR; the SEG goes to ``dicom`` destinations, key images to
    ``dicom-key-images`` ones; the ORU^R01 goes to the HL7 endpoint.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    deliveries = []
    for result in results:
        for destination in destinations.taking(ResultKind(result.kind)):
            delivery = Delivery(
                job_id=job_id,
                result_id=result.id,
                channel=destination.kind.channel.value,
                destination=destination.name,
                state=DeliveryState.PENDING.value,
                attempts=0,
            )
            session.add(delivery)
            deliveries.append(delivery)
    session.flush()
    return deliveries


def due_deliveries(
    session: Session, job_id: int, channel: Channel, now: datetime | None = None
) -> list[tuple[Delivery, Result]]:
    """Pending deliveries of a job on ``channel`` whose next try is due, with their results.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    now = now or utcnow()
    rows = session.execute(
        select(Delivery, Result)
        .join(Result, Result.id == Delivery.result_id)
        .where(
            Delivery.job_id == job_id,
            Delivery.channel == channel.value,
            Delivery.state == DeliveryState.PENDING.value,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        )
        .order_by(Delivery.destination, Delivery.id)
    ).all()
    return [(delivery, result) for delivery, result in rows]


def claim_delivery(
    session: Session, delivery_id: int, policy: JobPolicy, now: datetime | None = None
) -> bool:
    """Take one due delivery for an attempt (counts the attempt, holds it for a while).

    Returns:
        False when another worker took it first or it is no longer due.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    now = now or utcnow()
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.state == DeliveryState.PENDING.value,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        )
        .values(
            attempts=Delivery.attempts + 1,
            next_attempt_at=now + timedelta(seconds=policy.delivery_attempt_seconds),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def record_attempt(
    session: Session,
    delivery_id: int,
    *,
    delivered: bool,
    status: str | None,
    error: str | None,
    policy: JobPolicy,
    commitment_uid: str | None = None,
    now: datetime | None = None,
) -> DeliveryState:
    """Record the outcome of a claimed attempt; schedule the retry or dead-letter it.

    An object stored with storage commitment requested (``commitment_uid``) stays
    ``committing``: the destination's report decides. An outcome that comes after the report
    already did (the report won the race with this record) changes nothing.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
        LookupError: if there is no such delivery.
    """
    now = now or utcnow()
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        raise LookupError(f"no delivery {delivery_id}")
    if not _undecided(delivery, commitment_uid):
        return DeliveryState(delivery.state)
    delivery.last_status = status
    delivery.last_error = error
    delivery.updated_at = now
    if not delivered:
        _fail(delivery, policy, now)
    elif commitment_uid is None:
        _mark_sent(delivery, now)
    # else stored under a commitment request: committing (mark_committing) until the report
    return DeliveryState(delivery.state)


def _undecided(delivery: Delivery, commitment_uid: str | None) -> bool:
    """True while an attempt's outcome is still the delivery's to record."""
    if commitment_uid is not None:
        return (
            delivery.state == DeliveryState.COMMITTING.value
            and delivery.commitment_uid == commitment_uid
        )
    return delivery.state in (DeliveryState.PENDING.value, DeliveryState.COMMITTING.value)


def _mark_sent(delivery: Delivery, now: datetime) -> None:
    delivery.state = DeliveryState.SENT.value
    delivery.delivered_at = now
    delivery.next_attempt_at = None


def _fail(delivery: Delivery, policy: JobPolicy, now: datetime) -> None:
    """The attempt failed: pending again after the backoff, or dead after the attempt limit."""
    if delivery.attempts >= policy.delivery_max_attempts:
        delivery.state = DeliveryState.DEAD.value
        delivery.next_attempt_at = None
    else:
        delivery.state = DeliveryState.PENDING.value
        delivery.next_attempt_at = now + policy.delivery_backoff(delivery.attempts)


def mark_committing(
    session: Session,
    destination: str,
    transaction_uid: str,
    sop_instance_uids: Collection[str],
    now: datetime | None = None,
) -> list[int]:
    """Hold the stored objects' claimed deliveries to ``destination`` ``committing`` under
    ``transaction_uid``, with an event on each job's timeline; returns the delivery IDs.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    now = now or utcnow()
    deliveries = _deliveries_of(session, destination, sop_instance_uids, DeliveryState.PENDING)
    for delivery in deliveries:
        delivery.state = DeliveryState.COMMITTING.value
        delivery.commitment_uid = transaction_uid
        delivery.commit_requested_at = now
        delivery.next_attempt_at = None
        delivery.updated_at = now
    for (job_id, name), count in Counter((d.job_id, d.destination) for d in deliveries).items():
        _event(session, job_id, f"storage commitment requested from {name}: {count} objects")
    return [d.id for d in deliveries]


def apply_commitment_report(
    session: Session,
    transaction_uid: str,
    *,
    committed: Collection[str],
    failed: Mapping[str, int],
    policy: JobPolicy,
    now: datetime | None = None,
) -> list[int]:
    """Settle the ``committing`` deliveries of a storage commitment report: committed objects
    are ``sent``; failed ones count as a failed attempt (retried after the backoff, dead after
    the limit). Objects the report does not name stay ``committing`` until the timeout.

    Returns:
        The job ID of each settled delivery (none for a transaction nothing waits for).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    now = now or utcnow()
    rows = session.execute(
        select(Delivery, Result.sop_instance_uid)
        .join(Result, Result.id == Delivery.result_id)
        .where(
            Delivery.commitment_uid == transaction_uid,
            Delivery.state == DeliveryState.COMMITTING.value,
        )
        .order_by(Delivery.id)
    ).all()
    settled: list[tuple[Delivery, str | None]] = []
    for delivery, result_uid in rows:
        sop_instance_uid = result_uid or ""
        if sop_instance_uid in committed:
            delivery.last_error = None
            _mark_sent(delivery, now)
            settled.append((delivery, None))
        elif sop_instance_uid in failed:
            reason = f"storage commitment failed: 0x{failed[sop_instance_uid]:04X}"
            delivery.last_error = reason
            _fail(delivery, policy, now)
            settled.append((delivery, reason))
        else:
            continue
        delivery.updated_at = now
    _report_events(session, settled)
    return [delivery.job_id for delivery, _ in settled]


def _report_events(session: Session, settled: Sequence[tuple[Delivery, str | None]]) -> None:
    """One timeline event per job, destination and outcome of a report."""
    outcomes = Counter((d.job_id, d.destination, error) for d, error in settled)
    for (job_id, name, error), count in outcomes.items():
        if error is None:
            _event(session, job_id, f"storage commitment from {name}: {count} objects committed")
        else:
            _event(session, job_id, f"{error} ({name}, {count} objects)")


def expire_commitments(
    session: Session, policy: JobPolicy, now: datetime | None = None
) -> list[int]:
    """Fail the attempts whose storage commitment was not reported within
    ``policy.commitment_timeout_seconds`` (retried after the backoff, dead after the limit).

    Returns:
        The IDs of the jobs whose deliveries expired.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    now = now or utcnow()
    limit = policy.commitment_timeout_seconds
    expired = session.scalars(
        select(Delivery)
        .where(
            Delivery.state == DeliveryState.COMMITTING.value,
            Delivery.commit_requested_at <= now - timedelta(seconds=limit),
        )
        .order_by(Delivery.id)
    ).all()
    error = f"no storage commitment within {limit:g} s"
    for delivery in expired:
        delivery.last_error = error
        delivery.updated_at = now
        _fail(delivery, policy, now)
    _report_events(session, [(delivery, error) for delivery in expired])
    return sorted({delivery.job_id for delivery in expired})


def _deliveries_of(
    session: Session, destination: str, sop_instance_uids: Collection[str], state: DeliveryState
) -> list[Delivery]:
    """The deliveries to ``destination`` in ``state`` of the results with these UIDs."""
    if not sop_instance_uids:
        return []
    return list(
        session.scalars(
            select(Delivery)
            .join(Result, Result.id == Delivery.result_id)
            .where(
                Delivery.destination == destination,
                Delivery.state == state.value,
                Result.sop_instance_uid.in_(list(sop_instance_uids)),
            )
            .order_by(Delivery.id)
        )
    )


def _event(session: Session, job_id: int, message: str) -> None:
    job = session.get(Job, job_id)
    if job is not None:
        add_event(session, job, message)


def channel_states(session: Session, job_id: int, channel: Channel) -> set[DeliveryState]:
    """The distinct delivery states of a job's deliveries on ``channel``.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    rows = session.scalars(
        select(Delivery.state)
        .where(Delivery.job_id == job_id, Delivery.channel == channel.value)
        .distinct()
    )
    return {DeliveryState(state) for state in rows}


def count_deliveries(session: Session, job_id: int) -> int:
    """How many deliveries a job has, on every channel, in every state.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    return int(
        session.scalar(select(func.count()).select_from(Delivery).where(Delivery.job_id == job_id))
        or 0
    )
