"""MLLP client: send one HL7 v2 message and check its ACK.

Framing is ``<VT> message <FS><CR>`` (HL7 v2.5 appendix C). A send succeeds only on an ACK whose
MSA-1 is ``AA`` or ``CA`` and whose MSA-2 equals the message's MSH-10. A reject (``AE``, ``AR``,
``CE``, ``CR``), an ACK for another message, garbage, a closed connection or a timeout is a failed
attempt; the caller retries with the very same bytes (same MSH-10) so the receiver can de-duplicate.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\r"
ACCEPTED = frozenset({"AA", "CA"})
MAX_ACK_BYTES = 1 << 20


@dataclass(frozen=True)
class Ack:
    """An acknowledgement as received.

    Attributes:
        code: MSA-1 (``AA``, ``AE``, ``AR``, ``CA``, ``CE``, ``CR``).
        control_id: MSA-2, the MSH-10 of the message acknowledged.
        text: MSA-3, the receiver's text, if any.
    """

    code: str
    control_id: str
    text: str = ""


@dataclass(frozen=True)
class SendOutcome:
    """What one attempt achieved.

    Attributes:
        accepted: True only for AA/CA acknowledging our MSH-10.
        code: MSA-1 when an ACK was parsed, else None.
        error: Why the attempt failed, for the delivery record.
    """

    accepted: bool
    code: str | None
    error: str | None = None


def frame(message: bytes) -> bytes:
    """Wrap an ER7 message in an MLLP block (segment separators become ``\\r``).

    Raises:
        ValueError: if the message contains the MLLP block characters.
    """
    body = message.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    if START_BLOCK in body or b"\x1c" in body:
        raise ValueError("message contains MLLP block characters")
    return START_BLOCK + body + END_BLOCK


def unframe(block: bytes) -> bytes:
    """The message inside one MLLP block.

    Raises:
        ValueError: if ``block`` is not one complete MLLP block.
    """
    if not block.startswith(START_BLOCK) or not block.endswith(END_BLOCK):
        raise ValueError("not an MLLP block")
    return block[len(START_BLOCK) : -len(END_BLOCK)]


def _fields(segment: str, separator: str) -> list[str]:
    return segment.split(separator)


def control_id_of(message: bytes) -> str:
    """MSH-10 of an ER7 message.

    Raises:
        ValueError: if the message does not start with a valid MSH segment.
    """
    text = message.decode("utf-8", errors="replace")
    if not text.startswith("MSH") or len(text) < 4:
        raise ValueError("message does not start with MSH")
    msh = _fields(text.replace("\n", "\r").split("\r", 1)[0], text[3])
    # MSH-1 is the separator itself, so MSH-n is at index n - 1.
    if len(msh) < 10 or not msh[9]:
        raise ValueError("MSH-10 is missing")
    return msh[9]


def parse_ack(message: bytes) -> Ack:
    """Read MSA-1..3 from an ACK.

    Raises:
        ValueError: if the message has no MSH or no MSA segment with a code.
    """
    text = message.decode("utf-8", errors="replace").replace("\n", "\r")
    if not text.startswith("MSH") or len(text) < 4:
        raise ValueError("ACK does not start with MSH")
    separator = text[3]
    for segment in text.split("\r"):
        fields = _fields(segment, separator)
        if fields[0] == "MSA" and len(fields) > 2 and fields[1]:
            return Ack(fields[1], fields[2], fields[3] if len(fields) > 3 else "")
    raise ValueError("ACK has no MSA segment")


def _read_block(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(END_BLOCK):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before a complete ACK")
        data += chunk
        if len(data) > MAX_ACK_BYTES:
            raise ValueError("ACK too large")
    start = data.find(START_BLOCK)
    if start < 0:
        raise ValueError("reply is not MLLP-framed")
    return unframe(data[start:])


def send_message(
    host: str,
    port: int,
    message: bytes,
    *,
    connect_timeout: float = 10.0,
    read_timeout: float = 30.0,
) -> SendOutcome:
    """Send one message over a new MLLP connection and check the ACK.

    Returns:
        The outcome; network failures, timeouts and bad ACKs are outcomes, not exceptions.

    Raises:
        ValueError: if ``message`` itself has no MSH-10 or contains MLLP block characters.
    """
    control_id = control_id_of(message)
    block = frame(message)
    try:
        with socket.create_connection((host, port), timeout=connect_timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(read_timeout)
            sock.sendall(block)
            reply = _read_block(sock)
    except (OSError, ConnectionError) as exc:
        return SendOutcome(False, None, f"{type(exc).__name__}: {exc}")
    except ValueError as exc:
        return SendOutcome(False, None, f"bad reply: {exc}")
    try:
        ack = parse_ack(reply)
    except ValueError as exc:
        return SendOutcome(False, None, f"bad ACK: {exc}")
    if ack.control_id != control_id:
        return SendOutcome(False, ack.code, f"ACK is for {ack.control_id!r}, not {control_id!r}")
    if ack.code not in ACCEPTED:
        return SendOutcome(False, ack.code, f"rejected: {ack.code} {ack.text}".strip())
    return SendOutcome(True, ack.code)
