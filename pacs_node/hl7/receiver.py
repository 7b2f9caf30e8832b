"""A small asyncio MLLP receiver, for tests and demos: records messages and answers with ACKs.

``answers`` scripts the MSA-1 codes to answer, one per received message (``"AA"`` once the script
runs out); ``None`` in the script closes the connection without answering. Run it in a background
thread with :meth:`MllpReceiver.start` / :meth:`MllpReceiver.stop`, or as a demo RIS:
``python -m pacs_node.hl7.receiver --port 2575`` prints each message's MSH-10 and answers AA.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from pacs_node.hl7.mllp import END_BLOCK, START_BLOCK, control_id_of, frame, unframe


def build_ack(message: bytes, code: str, text: str = "") -> bytes:
    """An ACK (HL7 v2.5) for ``message`` with MSA-1 ``code`` and MSA-2 its MSH-10.

    Raises:
        ValueError: if the message has no MSH-10.
    """
    control_id = control_id_of(message)
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    segments = [
        f"MSH|^~\\&|MLLP_RECEIVER||PACS_NODE||{now}||ACK|ACK{control_id[:17]}|P|2.5",
        f"MSA|{code}|{control_id}|{text}",
    ]
    return "\r".join(segments).encode()


class MllpReceiver:
    """An MLLP listener on loopback that keeps what it received."""

    def __init__(self, answers: Sequence[str | None] = (), host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.received: list[bytes] = []
        self._answers = list(answers)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def _next_answer(self) -> str | None:
        with self._lock:
            return self._answers.pop(0) if self._answers else "AA"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.readuntil(END_BLOCK)
                message = unframe(data[data.find(START_BLOCK) :])
                with self._lock:
                    self.received.append(message)
                code = self._next_answer()
                if code is None:
                    break
                writer.write(frame(build_ack(message, code)))
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except ValueError:
            pass  # garbage: drop the connection
        finally:
            writer.close()

    def start(self) -> MllpReceiver:
        """Start listening on a free port (see :attr:`port`).

        Raises:
            OSError: if the port cannot be bound.
        """
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, self.host, self.port), self._loop
        )
        self._server = future.result(timeout=10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Stop listening and end the thread."""
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._close(self._server), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @staticmethod
    async def _close(server: asyncio.Server) -> None:
        # on the loop's thread: asyncio.Server is not thread-safe
        server.close()
        await server.wait_closed()

    def control_ids(self) -> list[str]:
        """MSH-10 of every message received, in order.

        Raises:
            ValueError: if a received message has no MSH-10.
        """
        with self._lock:
            return [control_id_of(m) for m in self.received]


def main(argv: Sequence[str]) -> int:
    """Run a demo receiver until interrupted; returns the exit status.

    Raises:
        OSError: if the port cannot be bound.
    """
    parser = argparse.ArgumentParser(description="MLLP receiver that answers AA (demo RIS)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2575)
    args = parser.parse_args(argv)
    receiver = MllpReceiver(host=args.host)
    receiver.port = args.port
    receiver.start()
    print(f"MLLP receiver on {args.host}:{receiver.port}", flush=True)
    seen = 0
    try:
        while True:
            time.sleep(0.5)
            ids = receiver.control_ids()
            for control_id in ids[seen:]:
                print(f"received {control_id}", flush=True)
            seen = len(ids)
    except KeyboardInterrupt:
        return 0
    finally:
        receiver.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
