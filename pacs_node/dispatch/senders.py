"""The sender of each destination kind."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from pacs_node.destinations import DestinationKind
from pacs_node.dispatch.attempt import Sender
from pacs_node.dispatch.dicom import send_files
from pacs_node.dispatch.mllp import send_messages


def senders(*, calling_ae: str, timeout: float) -> Mapping[DestinationKind, Sender]:
    """The sender of each destination kind, with the node's AE title and network timeout."""
    dicom = partial(send_files, calling_ae=calling_ae, timeout=timeout)
    return {
        DestinationKind.DICOM: dicom,
        DestinationKind.DICOM_KEY_IMAGES: dicom,
        DestinationKind.HL7: send_messages,
    }
