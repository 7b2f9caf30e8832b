"""Query/retrieve SCU: C-FIND a source for studies, then C-MOVE a study to the node's own AE
title or C-GET it over the node's association (Study Root information model).

Nothing here raises for a source that is down or refuses: the outcome says why.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ComprehensiveSRStorage,
    EnhancedMRImageStorage,
    EnhancedSRStorage,
    KeyObjectSelectionDocumentStorage,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from pynetdicom.status import code_to_category

from pacs_node.errors import NodeError
from pacs_node.sources import Source

LOG = logging.getLogger(__name__)

PENDING = ("Pending",)
GET_STORAGE_CLASSES = (
    MRImageStorage,
    EnhancedMRImageStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    ComprehensiveSRStorage,
    EnhancedSRStorage,
    KeyObjectSelectionDocumentStorage,
)
"""What a C-GET accepts back: lumbar MR images and the derived objects kept beside them."""
STUDY_KEYS = (
    "StudyInstanceUID",
    "PatientID",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "ModalitiesInStudy",
)


class SourceUnavailableError(NodeError, ConnectionError):
    """The source could not be reached or refused the association or the query."""

    retryable = True


@dataclass(frozen=True)
class StudyMatch:
    """A study a source holds, as its C-FIND answered."""

    study_instance_uid: str
    patient_id: str
    accession_number: str
    study_date: str
    study_time: str
    study_description: str
    modalities: tuple[str, ...]


@dataclass(frozen=True)
class RetrieveOutcome:
    """How a C-MOVE or C-GET ended: the final status and sub-operation counts."""

    status: int | None
    completed: int
    failed: int
    warning: int
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        """True when the source sent the whole study (warnings allowed)."""
        return self.error is None and self.failed == 0 and self.status in (0x0000, 0xB000)


def _associate(
    source: Source,
    calling_ae: str,
    timeout: float,
    contexts: Sequence[Any],
    ext_neg: Sequence[Any] = (),
    handlers: Sequence[Any] = (),
) -> Association:
    """An established association with ``source``.

    Raises:
        SourceUnavailableError: if it cannot be opened.
    """
    try:
        with socket.create_connection((source.host, source.port), timeout=timeout):
            pass
    except OSError as exc:
        raise SourceUnavailableError(f"cannot connect to source {source.name}: {exc}") from exc
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout
    ae.requested_contexts = list(contexts)
    assoc = ae.associate(
        source.host,
        source.port,
        ae_title=source.ae_title,
        ext_neg=list(ext_neg) or None,
        evt_handlers=list(handlers) or None,
    )
    if not assoc.is_established:
        verb = "rejected" if assoc.is_rejected else "could not open"
        raise SourceUnavailableError(f"source {source.name} {verb} the association")
    return assoc


def _text(identifier: Dataset, keyword: str) -> str:
    value = identifier.get(keyword, "")
    return "" if value is None else str(value)


def _match(identifier: Dataset) -> StudyMatch:
    modalities = identifier.get("ModalitiesInStudy", "") or ""
    if isinstance(modalities, str):
        modalities = [m for m in modalities.split("\\") if m]
    return StudyMatch(
        study_instance_uid=_text(identifier, "StudyInstanceUID"),
        patient_id=_text(identifier, "PatientID"),
        accession_number=_text(identifier, "AccessionNumber"),
        study_date=_text(identifier, "StudyDate"),
        study_time=_text(identifier, "StudyTime"),
        study_description=_text(identifier, "StudyDescription"),
        modalities=tuple(str(m) for m in modalities),
    )


def find_studies(
    source: Source, *, calling_ae: str, timeout: float, **keys: str
) -> list[StudyMatch]:
    """C-FIND at study level: the studies matching ``keys`` (DICOM keywords → match values).

    Raises:
        SourceUnavailableError: if the source cannot be reached, refuses, or fails the query.
    """
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    for keyword in STUDY_KEYS:
        setattr(query, keyword, keys.get(keyword, ""))
    assoc = _associate(
        source, calling_ae, timeout, [build_context(StudyRootQueryRetrieveInformationModelFind)]
    )
    matches = []
    try:
        for status, identifier in assoc.send_c_find(
            query, StudyRootQueryRetrieveInformationModelFind
        ):
            category = code_to_category(int(status.Status)) if "Status" in status else None
            if category in PENDING and identifier is not None:
                matches.append(_match(identifier))
            elif category not in ("Success", *PENDING):
                raise SourceUnavailableError(f"source {source.name} failed the query ({category})")
    finally:
        if assoc.is_established:
            assoc.release()
    return [m for m in matches if m.study_instance_uid]


def move_study(
    source: Source, study_instance_uid: str, *, calling_ae: str, timeout: float
) -> RetrieveOutcome:
    """C-MOVE a study to the node's own AE title (``calling_ae``), where the node's SCP
    receives and stores it."""
    context = build_context(StudyRootQueryRetrieveInformationModelMove)
    try:
        assoc = _associate(source, calling_ae, timeout, [context])
    except SourceUnavailableError as exc:
        return RetrieveOutcome(None, 0, 0, 0, str(exc))
    try:
        responses = assoc.send_c_move(
            _study_identifier(study_instance_uid),
            calling_ae,
            StudyRootQueryRetrieveInformationModelMove,
        )
        return _final(responses)
    finally:
        if assoc.is_established:
            assoc.release()


def get_study(
    source: Source,
    study_instance_uid: str,
    *,
    calling_ae: str,
    timeout: float,
    on_store: Callable[[Event], int],
    on_released: Callable[[Association], None],
) -> RetrieveOutcome:
    """C-GET a study over the node's association; ``on_store`` stores each instance as the SCP
    would (it answers the C-STORE status) and ``on_released`` closes the books on the
    association once the source has sent everything."""
    contexts = [build_context(StudyRootQueryRetrieveInformationModelGet)]
    contexts += [build_context(sop) for sop in GET_STORAGE_CLASSES]
    roles = [build_role(sop, scp_role=True) for sop in GET_STORAGE_CLASSES]
    try:
        assoc = _associate(
            source, calling_ae, timeout, contexts, roles, [(evt.EVT_C_STORE, on_store)]
        )
    except SourceUnavailableError as exc:
        return RetrieveOutcome(None, 0, 0, 0, str(exc))
    try:
        responses = assoc.send_c_get(
            _study_identifier(study_instance_uid), StudyRootQueryRetrieveInformationModelGet
        )
        return _final(responses)
    finally:
        if assoc.is_established:
            assoc.release()
        on_released(assoc)


def _study_identifier(study_instance_uid: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_instance_uid
    return identifier


def _final(responses: Any) -> RetrieveOutcome:
    """The last (non-pending) response of a C-MOVE or C-GET, as an outcome."""
    last: Dataset | None = None
    for status, _ in responses:
        if "Status" in status:
            last = status
    if last is None:
        return RetrieveOutcome(None, 0, 0, 0, "no response (timeout or abort)")
    code = int(last.Status)
    outcome = RetrieveOutcome(
        code,
        int(last.get("NumberOfCompletedSuboperations", 0) or 0),
        int(last.get("NumberOfFailedSuboperations", 0) or 0),
        int(last.get("NumberOfWarningSuboperations", 0) or 0),
    )
    if code_to_category(code) in ("Success", "Warning"):
        return outcome
    return RetrieveOutcome(
        code,
        outcome.completed,
        outcome.failed,
        outcome.warning,
        f"source answered 0x{code:04X} ({code_to_category(code).lower()})",
    )
