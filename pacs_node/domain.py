"""Plain enums and value types shared across the node's layers."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is in its life (docs/architecture.md, "Job states")."""

    QUEUED = "queued"
    RUNNING = "running"
    RESULTS_READY = "results_ready"
    DELIVERING = "delivering"
    NOTIFYING = "notifying"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    SUPERSEDED = "superseded"

    @property
    def terminal(self) -> bool:
        """True for states a job never leaves on its own."""
        return self in (JobState.DONE, JobState.FAILED, JobState.SKIPPED, JobState.SUPERSEDED)


class StudyStatus(StrEnum):
    """Whether a study is still arriving or has been handed to a job."""

    RECEIVING = "receiving"
    COMPLETE = "complete"
    DERIVED_ONLY = "derived_only"
    """Holds only derived objects (SEG, SR, ...): nothing to analyse until a source image comes."""


class InstanceOrigin(StrEnum):
    """What a received instance is to the node; only source images open a study for analysis."""

    SOURCE = "source"
    """An image the selection rules can classify (MR, CT, ...): it opens or reopens its study."""
    DERIVED = "derived"
    """A derived object (SEG, SR, KO, PR, secondary capture, ...) from another system."""
    OWN_RESULT = "own_result"
    """One of the node's own results sent back to it (a PACS that forwards everything)."""
    REFERENCE = "reference"
    """A segmentation that references one of the node's SEGs: a reviewer's corrected version,
    kept as the study's reference segmentation (recorded as feedback, never analysed or sent)."""


class SeriesRole(StrEnum):
    """What a series is for the lumbar protocol."""

    SAG_T1 = "SAG_T1"
    SAG_T2 = "SAG_T2"
    SAG_STIR = "SAG_STIR"
    AX_T2 = "AX_T2"
    LOCALIZER = "LOCALIZER"
    OTHER = "OTHER"


class CompletionTrigger(StrEnum):
    """Why a study was judged complete."""

    QUIET_PERIOD = "quiet_period"
    RELEASED_WITH_PROTOCOL = "released_with_protocol"
    FORCED = "forced"
    RETRIEVED = "retrieved"
    """Fetched from a source on request (``pacs-node retrieve``, the API)."""
    PRIOR = "prior"
    """Fetched as the prior of another study: analysed for comparison, its results not sent."""


class RetrievalPurpose(StrEnum):
    """Why the node fetched a study from a source."""

    ON_DEMAND = "on_demand"
    PRIOR = "prior"

    @property
    def trigger(self) -> CompletionTrigger:
        """The completion trigger of the job the fetched study gets."""
        if self is RetrievalPurpose.PRIOR:
            return CompletionTrigger.PRIOR
        return CompletionTrigger.RETRIEVED


class RetrievalState(StrEnum):
    """Where a retrieval stands."""

    RETRIEVING = "retrieving"
    RETRIEVED = "retrieved"
    FAILED = "failed"


class ResultKind(StrEnum):
    """What a job produced: each is stored with its fixed identity and delivered by kind."""

    SEG = "seg"
    SR = "sr"
    KEY_IMAGE = "key_image"
    ORU = "oru"

    @property
    def channel(self) -> Channel:
        """How a result of this kind is delivered."""
        return Channel.HL7 if self is ResultKind.ORU else Channel.DICOM


class Channel(StrEnum):
    """How an object is delivered (and which job stage sends it)."""

    DICOM = "dicom"
    HL7 = "hl7"


class DeliveryState(StrEnum):
    """Where one object stands with one destination."""

    PENDING = "pending"
    COMMITTING = "committing"
    """Stored, waiting for the PACS's storage commitment (N-EVENT-REPORT)."""
    SENT = "sent"
    DEAD = "dead"
