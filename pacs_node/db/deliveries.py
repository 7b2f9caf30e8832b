"""Deliveries: one row per result and destination (by name), with attempts and the next try.

A worker claims a due delivery with a compare-and-set that also pushes its next try into the
future, so two workers never send the same object at once and a worker that dies mid-send only
delays the retry. Failures back off exponentially (hours, for a PACS down for maintenance) and end
``dead`` after the attempt limit; an admin replay (``pacs_node.db.admin_actions``) sets them
``pending`` again and the delivery worker sends the same stored objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from pacs_node.db.base import utcnow
from pacs_node.db.tables import Delivery, Result
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
    now: datetime | None = None,
) -> DeliveryState:
    """Record the outcome of a claimed attempt; schedule the retry or dead-letter it.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
        LookupError: if there is no such delivery.
    """
    now = now or utcnow()
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        raise LookupError(f"no delivery {delivery_id}")
    delivery.last_status = status
    delivery.last_error = error
    delivery.updated_at = now
    if delivered:
        delivery.state = DeliveryState.SENT.value
        delivery.delivered_at = now
        delivery.next_attempt_at = None
    elif delivery.attempts >= policy.delivery_max_attempts:
        delivery.state = DeliveryState.DEAD.value
        delivery.next_attempt_at = None
    else:
        delivery.next_attempt_at = now + policy.delivery_backoff(delivery.attempts)
    return DeliveryState(delivery.state)


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
