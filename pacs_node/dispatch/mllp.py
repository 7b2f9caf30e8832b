"""MLLP sender: each stored HL7 message to the RIS over its own connection, ACK checked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pacs_node.destinations import Destination
from pacs_node.dispatch.attempt import Attempt
from pacs_node.hl7.mllp import send_message


def send_messages(destination: Destination, paths: Sequence[Path]) -> list[Attempt]:
    """Send each ER7 file; an attempt succeeds only on AA/CA for its own MSH-10.

    Raises:
        OSError: if a file cannot be read.
        ValueError: if a stored message has no MSH-10 or holds MLLP block characters.
    """
    attempts = []
    for path in paths:
        outcome = send_message(destination.host, destination.port, path.read_bytes())
        attempts.append(Attempt(outcome.accepted, outcome.code, outcome.error))
    return attempts
