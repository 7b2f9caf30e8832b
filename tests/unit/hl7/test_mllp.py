"""MLLP framing, ACK parsing and the client against the asyncio receiver and hostile peers."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from pacs_node.hl7.mllp import (
    END_BLOCK,
    START_BLOCK,
    control_id_of,
    frame,
    parse_ack,
    send_message,
    unframe,
)
from pacs_node.hl7.receiver import MllpReceiver, build_ack

MESSAGE = b"MSH|^~\\&|PACS_NODE||RIS||20260101120000||ORU^R01^ORU_R01|CTRL0001|P|2.5\rPID|1||P123\r"


@pytest.fixture
def receiver() -> Iterator[Callable[..., MllpReceiver]]:
    started: list[MllpReceiver] = []

    def start(*answers: str | None) -> MllpReceiver:
        server = MllpReceiver(answers).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_frame_round_trip_and_newlines_become_cr() -> None:
    block = frame(b"MSH|a\nPID|b")
    assert block.startswith(START_BLOCK) and block.endswith(END_BLOCK)
    assert unframe(block) == b"MSH|a\rPID|b"
    with pytest.raises(ValueError):
        frame(b"MSH|\x1c")
    with pytest.raises(ValueError):
        unframe(b"MSH|no block")


def test_control_id_and_ack_parsing() -> None:
    assert control_id_of(MESSAGE) == "CTRL0001"
    ack = parse_ack(build_ack(MESSAGE, "AE", "bad patient"))
    assert (ack.code, ack.control_id, ack.text) == ("AE", "CTRL0001", "bad patient")
    with pytest.raises(ValueError):
        parse_ack(b"MSH|^~\\&|X\rPID|1")
    with pytest.raises(ValueError):
        control_id_of(b"PID|1")


def test_accepted_only_on_aa_for_our_control_id(receiver: Callable[..., MllpReceiver]) -> None:
    server = receiver("AE", "AR", "AA")
    outcomes = [send_message("127.0.0.1", server.port, MESSAGE) for _ in range(3)]
    assert [(o.accepted, o.code) for o in outcomes] == [
        (False, "AE"),
        (False, "AR"),
        (True, "AA"),
    ]
    # The very same message each time: the receiver can de-duplicate on MSH-10.
    assert server.received == [MESSAGE] * 3
    assert server.control_ids() == ["CTRL0001"] * 3


def test_receiver_closing_without_ack_is_a_failure(receiver: Callable[..., MllpReceiver]) -> None:
    server = receiver(None)
    outcome = send_message("127.0.0.1", server.port, MESSAGE, read_timeout=5)
    assert not outcome.accepted and outcome.code is None
    assert "closed" in (outcome.error or "")


def _one_shot_server(reply: bytes | None) -> tuple[int, threading.Thread]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])

    def serve() -> None:
        connection, _ = listener.accept()
        with connection, listener:
            data = b""
            while not data.endswith(END_BLOCK):
                data += connection.recv(4096)
            if reply is None:
                threading.Event().wait(2)  # say nothing: the client must time out
            else:
                connection.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (frame(b"MSH|^~\\&|R||S||20260101||ACK|1|P|2.5\rMSA|AA|OTHER01"), "not 'CTRL0001'"),
        (frame(b"garbage without segments"), "bad ACK"),
        (b"not framed at all" + END_BLOCK, "not MLLP-framed"),
        (None, "timed out"),
    ],
)
def test_wrong_garbage_or_silent_replies_fail(reply: bytes | None, expected: str) -> None:
    port, thread = _one_shot_server(reply)
    outcome = send_message("127.0.0.1", port, MESSAGE, read_timeout=0.5)
    thread.join(timeout=5)
    assert not outcome.accepted
    assert expected in (outcome.error or ""), outcome


def test_nobody_listening_is_a_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    outcome = send_message("127.0.0.1", port, MESSAGE, connect_timeout=1)
    assert not outcome.accepted and "ConnectionRefusedError" in (outcome.error or "")


def test_demo_receiver_command_prints_what_it_receives() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "pacs_node.hl7.receiver", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert "MLLP receiver on" in process.stdout.readline()
        deadline = time.monotonic() + 60
        outcome = send_message("127.0.0.1", port, MESSAGE)
        while not outcome.accepted and time.monotonic() < deadline:
            outcome = send_message("127.0.0.1", port, MESSAGE)
        assert outcome.accepted
        assert process.stdout.readline().strip() == "received CTRL0001"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
