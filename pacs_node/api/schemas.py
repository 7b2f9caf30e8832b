"""Request and response bodies of the admin API that are not query results."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class ReplayRequest(BaseModel):
    """Send a job's results to one destination again."""

    destination: str = Field(
        min_length=1, max_length=128, description="a destination's name, as in the job's deliveries"
    )


class ForceCompleteRequest(BaseModel):
    """Complete a receiving study now (the UID goes in the body, never in a logged URL)."""

    study_instance_uid: str = Field(min_length=1, max_length=64)


class ActionAccepted(BaseModel):
    """An admin action was applied; workers carry it out."""

    action: str
    target: str
    detail: str


class CheckResult(BaseModel):
    """One readiness check."""

    ok: bool
    detail: str


class Readiness(BaseModel):
    """Whether the node can take work, with each check's outcome."""

    ready: bool
    checks: dict[str, CheckResult]


class NodeInfo(BaseModel):
    """Who this node is: its identity (every result UID and HL7 control ID derives from it), its
    AE title, software version and the UID root of its results."""

    node_id: str = Field(description="created once by the first `db upgrade`")
    created_at: datetime
    ae_title: str
    software_version: str
    uid_root: str


class RetrieveRequest(BaseModel):
    """Fetch a study from a source by accession number or Study Instance UID (one of the two;
    in the body, never in a logged URL)."""

    source: str = Field(min_length=1, max_length=64, description="a source's name")
    accession_number: str | None = Field(default=None, min_length=1, max_length=16)
    study_instance_uid: str | None = Field(default=None, min_length=1, max_length=64)


class RetrieveAccepted(BaseModel):
    """The source holds the study (or studies): each is being fetched as one retrieval."""

    retrievals: list[int] = Field(description="ids for GET /api/retrievals/{id}")


class FeedbackSubject(BaseModel):
    """A level's finding (``level`` and ``abnormality``), or the segmentation as a whole."""

    level: str | None = Field(default=None, max_length=16, description="e.g. L4/L5")
    abnormality: str | None = Field(default=None, max_length=32, description="e.g. disc_bulge")
    segmentation: bool = Field(default=False, description="the SEG as a whole")


class FeedbackRequest(BaseModel):
    """One verdict on each listed subject of a job's results."""

    items: list[FeedbackSubject] = Field(min_length=1, max_length=100)
    verdict: Literal["accept", "reject", "amend"]
    amended_value: str | None = Field(
        default=None,
        max_length=500,
        description="amend: present or absent for a finding, a note for the segmentation",
    )
    comment: str | None = Field(default=None, max_length=1000)


class FeedbackRecorded(BaseModel):
    """The feedback rows stored."""

    job_id: int
    feedback_ids: list[int]


class JobFindings(BaseModel):
    """What a job's results say, as a reviewer checks them: each disc level's present/absent
    calls (from its SR) and whether it made a segmentation."""

    job_id: int
    findings: dict[str, dict[str, bool]]
    segmentation: bool
