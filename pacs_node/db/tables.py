"""Typed tables (not "models": that word belongs to the ML package).

Enums are stored by value as plain strings so the database stays readable and migrations do
not need enum types.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pacs_node.db.base import Base, UTCDateTime, utcnow

UID = String(64)
AE = String(16)


class NodeIdentity(Base):
    """The node's own identity: one row, created by the first ``db upgrade`` and never changed.

    Every result identity derives from it, so two installations (or one whose database was
    recreated) never give two patients' results the same UIDs or HL7 control IDs.
    """

    __tablename__ = "node_identity"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, comment="always 1: one row")
    node_id: Mapped[str] = mapped_column(String(32), comment="random 128 bits, hex")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class Study(Base):
    """A study as the node has received it so far."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    patient_id: Mapped[str | None] = mapped_column(String(64))
    accession_number: Mapped[str | None] = mapped_column(String(16))
    calling_ae: Mapped[str | None] = mapped_column(AE, comment="AE title of the last sender")
    status: Mapped[str] = mapped_column(String(16), comment="StudyStatus value")
    first_received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_released_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), comment="when an association that sent to this study was released"
    )
    force_complete: Mapped[bool] = mapped_column(default=False)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    series: Mapped[list[Series]] = relationship(back_populates="study")
    jobs: Mapped[list[Job]] = relationship(back_populates="study")

    __table_args__ = (
        Index(None, "status", "last_received_at"),
        # Admin job-history filters (pacs_node.db.queries).
        Index(None, "patient_id"),
        Index(None, "accession_number"),
        Index(None, "calling_ae"),
    )


class Series(Base):
    """A series with the attributes that classify it (taken from its first instance)."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    series_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_description: Mapped[str | None] = mapped_column(String(64))
    body_part_examined: Mapped[str | None] = mapped_column(String(16))
    attributes: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, comment="acquisition tags used by series classification"
    )
    role: Mapped[str | None] = mapped_column(String(16), comment="SeriesRole after completion")
    origin: Mapped[str] = mapped_column(
        String(16),
        default="source",
        server_default="source",
        comment="InstanceOrigin of its instances: only source images open a study",
    )

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    """A stored SOP instance; its file lives in the spool at ``path``."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)
    instance_number: Mapped[int | None] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text, comment="relative to the spool root")
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    calling_ae: Mapped[str | None] = mapped_column(AE)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    times_received: Mapped[int] = mapped_column(Integer, default=1)
    sha256: Mapped[str | None] = mapped_column(
        String(64), comment="of the stored file; NULL for instances stored before it was kept"
    )
    different_copies: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default="0",
        comment="copies with other content sent later under this SOP Instance UID, not stored",
    )

    series: Mapped[Series] = relationship(back_populates="instances")


class ReceiveError(Base):
    """An instance we refused, with why (the DIMSE status we answered)."""

    __tablename__ = "receive_errors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    calling_ae: Mapped[str | None] = mapped_column(AE)
    peer_address: Mapped[str | None] = mapped_column(String(64))
    sop_instance_uid: Mapped[str | None] = mapped_column(
        String(80), comment="as sent, truncated; may be invalid"
    )
    status: Mapped[int] = mapped_column(Integer, comment="DIMSE status answered")
    reason: Mapped[str] = mapped_column(Text)


class Job(Base):
    """One analysis of one version of a study. The database, not the broker, is the truth."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    version: Mapped[int] = mapped_column(Integer, comment="1 for the first job of a study")
    state: Mapped[str] = mapped_column(String(16), index=True, comment="JobState value")
    reason: Mapped[str | None] = mapped_column(Text, comment="why skipped or failed")
    skip_reason: Mapped[str | None] = mapped_column(
        Text, comment="out of intended use: the job sends a not-analysed SR, then ends skipped"
    )
    retryable: Mapped[bool] = mapped_column(default=False)
    trigger: Mapped[str | None] = mapped_column(String(32), comment="CompletionTrigger value")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    supersedes_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    model_name: Mapped[str | None] = mapped_column(String(64))
    config_hash: Mapped[str | None] = mapped_column(String(64))
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64))
    needs_review: Mapped[bool | None] = mapped_column(
        comment="the model's quality check asks for review; null when no model ran"
    )
    review_reasons: Mapped[str | None] = mapped_column(
        Text, comment="the check's reasons for review, one per line"
    )
    timeout_seconds: Mapped[int | None] = mapped_column(Integer, comment="per-job time limit")
    requested_by: Mapped[str | None] = mapped_column(
        String(64), comment="who asked for it (retrieved on demand): token name or cli:<user>"
    )
    prior_job_id: Mapped[int | None] = mapped_column(
        Integer, comment="jobs.id of the prior study's job this one was compared with"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    study: Mapped[Study] = relationship(back_populates="jobs")
    events: Mapped[list[JobEvent]] = relationship(
        back_populates="job", order_by="JobEvent.id", foreign_keys="JobEvent.job_id"
    )

    __table_args__ = (
        UniqueConstraint("study_id", "version"),
        # Keyset pagination of the job history, newest first, optionally by state.
        Index(None, "created_at", "id"),
        Index(None, "state", "created_at", "id"),
    )


class Retrieval(Base):
    """A study the node asked a source for (C-FIND, then C-MOVE or C-GET), and how it went."""

    __tablename__ = "retrievals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64), comment="the source's name (PACS_NODE_SOURCES)")
    study_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    purpose: Mapped[str] = mapped_column(String(16), comment="RetrievalPurpose value")
    requested_by: Mapped[str] = mapped_column(String(64), comment="token name or cli:<user>")
    for_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id"), comment="a prior: the job of the current study that asked"
    )
    state: Mapped[str] = mapped_column(String(16), comment="RetrievalState value")
    completed: Mapped[int] = mapped_column(Integer, default=0, comment="sub-operations")
    failed: Mapped[int] = mapped_column(Integer, default=0)
    warning: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str | None] = mapped_column(String(16), comment="final DIMSE status (hex)")
    reason: Mapped[str | None] = mapped_column(Text, comment="why it failed")
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id"), comment="the job its arrival completed into"
    )
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JobEvent(Base):
    """Append-only timeline of a job."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    state: Mapped[str] = mapped_column(String(16), comment="state after the event")
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    job: Mapped[Job] = relationship(back_populates="events", foreign_keys=[job_id])


class Result(Base):
    """An output object of a job (SEG, SR, key image, HL7 message), with its fixed identity.

    Identities are derived from the job and stored before the first send, so every retry sends
    the same object and the PACS or RIS can de-duplicate.
    """

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), comment="seg, sr, key_image or oru")
    sop_class_uid: Mapped[str | None] = mapped_column(UID)
    series_instance_uid: Mapped[str | None] = mapped_column(UID)
    sop_instance_uid: Mapped[str | None] = mapped_column(UID, unique=True)
    control_id: Mapped[str | None] = mapped_column(String(20), comment="HL7 MSH-10")
    path: Mapped[str] = mapped_column(Text, comment="encoded object, relative to the spool root")
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Delivery(Base):
    """One result to one destination: a DICOM peer (C-STORE) or the HL7 receiver (MLLP)."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id"), index=True)
    channel: Mapped[str] = mapped_column(String(8), comment="dicom or hl7")
    destination: Mapped[str] = mapped_column(
        String(128), comment="the destination's name (PACS_NODE_DESTINATIONS, hl7)"
    )
    state: Mapped[str] = mapped_column(
        String(16), index=True, comment="pending, sent, dead (after the attempt limit)"
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[str | None] = mapped_column(
        String(32), comment="DIMSE status (hex) or HL7 MSA-1 code of the last attempt"
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    commitment_uid: Mapped[str | None] = mapped_column(
        UID, index=True, comment="Transaction UID of the last storage commitment request"
    )
    commit_requested_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), comment="when the last storage commitment was requested (N-ACTION)"
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("result_id", "destination"),)


class Feedback(Base):
    """A reviewer's verdict on one finding of a job, or on its segmentation as a whole.

    Kept by study, so a newer version of the study shows the feedback given on earlier ones
    (``job_id`` says which); the model columns are copied from the job, so agreement rates stay
    per model version whatever happens to the job later. A reference segmentation sent back
    (a corrected SEG) is an ``amend`` of the segmentation with ``reference_instance_id`` set.
    """

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    subject: Mapped[str] = mapped_column(String(16), comment="finding or segmentation")
    level: Mapped[str | None] = mapped_column(String(16), comment="a finding: its disc level")
    abnormality: Mapped[str | None] = mapped_column(
        String(32), comment="a finding: its abnormality"
    )
    verdict: Mapped[str] = mapped_column(String(8), comment="accept, reject or amend")
    amended_value: Mapped[str | None] = mapped_column(
        String(500), comment="amend: present/absent for a finding, a note for the segmentation"
    )
    comment: Mapped[str | None] = mapped_column(String(1000))
    given_by: Mapped[str] = mapped_column(
        String(64), comment="token name, cli:<user>, or ae:<AE title> for a reference SEG"
    )
    given_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    model_name: Mapped[str | None] = mapped_column(String(64))
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64))
    config_hash: Mapped[str | None] = mapped_column(String(64))
    reference_instance_id: Mapped[int | None] = mapped_column(
        ForeignKey("instances.id"), comment="a reference segmentation: the SEG received"
    )

    __table_args__ = (
        CheckConstraint("subject IN ('finding', 'segmentation')", name="subject"),
        CheckConstraint("verdict IN ('accept', 'reject', 'amend')", name="verdict"),
        CheckConstraint(
            "(subject = 'finding') = (level IS NOT NULL AND abnormality IS NOT NULL)",
            name="finding_names_level",
        ),
        CheckConstraint("(verdict = 'amend') = (amended_value IS NOT NULL)", name="amend_value"),
        Index(None, "model_name", "checkpoint_sha256", "config_hash"),
    )


class ApiToken(Base):
    """An admin API token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), comment="viewer or admin")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditLog(Base):
    """Append-only record of admin actions: who, what, when, from where."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64), comment="token name, or 'cli:<user>'")
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(128), comment="e.g. job:42")
    remote_address: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
