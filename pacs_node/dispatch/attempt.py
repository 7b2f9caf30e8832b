"""What every sender does: send stored objects to one destination, one outcome per object.

A delivery stage looks up the sender of a destination's kind (:mod:`.senders`) and records each
:class:`Attempt` the same way, whatever the kind (C-STORE, STOW-RS, MLLP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pacs_node.destinations import Destination


@dataclass(frozen=True)
class Attempt:
    """What one attempt to deliver one object achieved.

    Attributes:
        delivered: True when the destination has the object (it answered success).
        status: The peer's answer as recorded: a DIMSE status (``"0x0000"``), an HTTP status
            (``"HTTP 200"``), a STOW-RS FailureReason (``"0xA700"``) or an HL7 MSA-1 code; None
            when none came back.
        error: Why it failed, for the delivery record.
        commitment_uid: Set when the object was stored and the destination asked for storage
            commitment under this Transaction UID: it counts as delivered only once the
            destination reports it committed (:mod:`.commitment`).
    """

    delivered: bool
    status: str | None
    error: str | None = None
    commitment_uid: str | None = None


class Sender(Protocol):
    """Sends files to a destination; never raises for a peer that is down or refuses."""

    def __call__(self, destination: Destination, paths: Sequence[Path]) -> list[Attempt]:
        """One attempt per path, in order.

        Raises:
            OSError: if a file cannot be read.
        """
