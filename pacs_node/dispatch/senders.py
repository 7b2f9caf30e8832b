"""The sender of each destination kind."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from pacs_node.destinations import DestinationKind
from pacs_node.dispatch.attempt import Sender
from pacs_node.dispatch.commitment import CommitmentJournal
from pacs_node.dispatch.dicom import send_files
from pacs_node.dispatch.mllp import send_messages
from pacs_node.dispatch.stow import send_studies


def senders(
    *,
    calling_ae: str,
    timeout: float,
    uid_root: str = "",
    commitments: CommitmentJournal | None = None,
) -> Mapping[DestinationKind, Sender]:
    """The sender of each destination kind, with the node's AE title and network timeout; the
    DICOM one asks destinations flagged ``/commit`` for storage commitment (Transaction UIDs
    under ``uid_root``), recorded in ``commitments``."""
    dicom = partial(
        send_files,
        calling_ae=calling_ae,
        timeout=timeout,
        uid_root=uid_root,
        commitments=commitments,
    )
    return {
        DestinationKind.DICOM: dicom,
        DestinationKind.DICOM_KEY_IMAGES: dicom,
        DestinationKind.DICOMWEB: partial(send_studies, timeout=timeout),
        DestinationKind.HL7: send_messages,
    }
