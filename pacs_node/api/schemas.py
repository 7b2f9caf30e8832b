"""Request and response bodies of the admin API that are not query results."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ReplayRequest(BaseModel):
    """Send a job's results to one destination again."""

    destination: str = Field(
        min_length=1, max_length=128, description="AE@host:port or host:port, as in the deliveries"
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
