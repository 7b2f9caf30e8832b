"""Transport tuned for bulk C-STORE: large reads, TCP_NODELAY, waiting that wakes on events.

pynetdicom reads PDUs 4 KiB at a time into a growing bytearray, and both of an association's
threads poll: the DUL thread sleeps a millisecond whenever nothing happened, the association
thread a millisecond before each look for a complete message. On a 512x512 MR instance that
is ~130 ``recv`` calls and re-allocations, and three polls, ~1.7 ms of the ~4.4 ms pynetdicom
needed per instance on one association; a connection that never speaks costs a thousand
wake-ups a second. A connection that closes before asking to associate (a load balancer's
health probe) kept its thread and its association slot until the ACSE timeout. These
subclasses keep pynetdicom's state machine and change only how bytes are read, how the two
threads wait (blocked on the socket, on a wake-up for outgoing primitives, or on the message
queue, each with a bound) and what a connection costs until it asks.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import socket
import ssl
import threading
from typing import Any, cast

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dul import DULServiceProvider
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import (
    AssociationSocket,
    RequestHandler,
    ThreadedAssociationServer,
)

# How long a connection that has not yet sent its A-ASSOCIATE-RQ may block in select() per
# reactor loop: long enough to cost nothing while idle, short enough for the ARTIM timer.
SILENT_PEER_WAIT_SECONDS = 0.1
# The longest an associated connection's threads block per loop with nothing to do: bounds how
# late timers, releases and aborts are noticed; data and outgoing messages wake them at once.
IDLE_WAIT_SECONDS = 0.02
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
READ_BLOCK_BYTES = 1024 * 1024
_WAITING_FOR_REQUEST = "Sta2"
# States that hold no association: idle (not yet connected, or closed), no request yet, or
# waiting for the transport to close.
_NOT_COUNTED = frozenset({"Sta1", _WAITING_FOR_REQUEST, "Sta13"})


def tune_socket(sock: socket.socket, timeout: float | None) -> None:
    """Turn off Nagle's algorithm, enlarge the receive buffer and bound blocking reads."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
    sock.settimeout(timeout)


class BulkAssociationSocket(AssociationSocket):
    """AssociationSocket with large ``recv_into`` reads and a blocking wait while silent."""

    def recv(self, nr_bytes: int) -> bytearray:
        """Read exactly ``nr_bytes`` (fewer only if the peer closed the connection).

        Memory grows with what actually arrives, in blocks, never with the length a peer
        claims: a forged 4 GiB PDU length costs nothing until 4 GiB are sent.
        """
        sock = self.socket
        assert sock is not None
        buffer = bytearray()
        while len(buffer) < nr_bytes:
            start = len(buffer)
            block = min(nr_bytes - start, READ_BLOCK_BYTES)
            buffer.extend(bytes(block))
            with memoryview(buffer) as view:
                read = 0
                while read < block:
                    count = sock.recv_into(view[start + read : start + block], block - read)
                    if count == 0:
                        break
                    read += count
            if read < block:
                del buffer[start + read :]
                break
        return buffer

    @property
    def ready(self) -> bool:
        """True if data is available; otherwise waits until data arrives, the association
        thread queues a primitive to send, or a bound passes (0.1 s while the peer has not yet
        asked to associate, :data:`IDLE_WAIT_SECONDS` after)."""
        dul = cast(EventDrivenDUL, self.assoc.dul)
        if self.socket is None or self._is_connected is False:
            dul.pause()
            return False
        if isinstance(self.socket, ssl.SSLSocket) and self.socket.pending():
            return True
        waiting = dul.state_machine.current_state == _WAITING_FOR_REQUEST
        try:
            ready = dul.wait_for(
                self.socket, SILENT_PEER_WAIT_SECONDS if waiting else IDLE_WAIT_SECONDS
            )
        except (OSError, ValueError):
            self.event_queue.put("Evt17")
            return False
        return ready


class _WakingQueue(queue.Queue[Any]):
    """The DUL's queue of primitives to send: each put wakes the DUL thread's wait."""

    def __init__(self, dul: EventDrivenDUL) -> None:
        super().__init__()
        self._dul = dul

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._dul.wake()


class EventDrivenDUL(DULServiceProvider):
    """A DUL whose thread blocks until the socket has data or a primitive is queued to send,
    instead of sleeping a millisecond whenever a loop found nothing to do.

    An eventfd carries the wake-ups; it is closed when the thread ends, under a lock so that a
    late put never writes to a closed (or reused) descriptor.
    """

    _wake_fd: int | None
    _wake_lock: threading.Lock

    @classmethod
    def adopt(cls, dul: DULServiceProvider) -> None:
        """Turn a DUL that has not started into an event-driven one."""
        assert not dul.is_alive() and dul.to_provider_queue.empty()
        dul.__class__ = cls
        assert isinstance(dul, cls)
        dul._wake_lock = threading.Lock()
        dul._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        dul.to_provider_queue = _WakingQueue(dul)
        dul._run_loop_delay = 0  # the wait is in the socket's ``ready``

    def wake(self) -> None:
        """Wake the thread if it waits (a no-op once it has ended)."""
        with self._wake_lock:
            if self._wake_fd is not None:
                os.eventfd_write(self._wake_fd, 1)

    def wait_for(self, sock: socket.socket, timeout: float) -> bool:
        """Block until ``sock`` is readable (True), a wake-up or ``timeout`` (False)."""
        return sock.fileno() in self._wait([sock.fileno()], timeout)

    def pause(self) -> None:
        """Wait a little with no socket to watch (closing), rather than spin."""
        self._wait([], IDLE_WAIT_SECONDS)

    def _wait(self, fds: list[int], timeout: float) -> list[int]:
        """The ``fds`` readable after waiting for them or a wake-up (consumed) up to ``timeout``;
        called on the DUL's own thread, the only one that closes the eventfd."""
        wake = self._wake_fd
        if wake is None:
            return select.select(fds, [], [], 0)[0]
        readable: list[int] = select.select([*fds, wake], [], [], timeout)[0]
        if wake in readable:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(wake)
        return readable

    def run(self) -> None:
        """The thread's body (pynetdicom's reactor), then the eventfd is closed."""
        try:
            super().run()
        finally:
            with self._wake_lock:
                fd, self._wake_fd = self._wake_fd, None
            if fd is not None:
                os.close(fd)

    def stop_dul(self) -> bool:
        """As pynetdicom's, but wakes the thread and joins it instead of polling."""
        if self.state_machine.current_state != "Sta1":
            return False
        self._kill_thread = True
        self.wake()
        if threading.current_thread() is not self:
            self.join()
        return True


class WaitingDIMSEProvider(DIMSEServiceProvider):
    """The association thread's non-blocking look for a message waits a little for one, so a
    complete message is served the moment it is decoded, not at the next 1 ms poll."""

    def get_msg(self, block: bool = False) -> Any:
        if block:
            return super().get_msg(block=True)
        try:
            return self.msg_queue.get(timeout=IDLE_WAIT_SECONDS)
        except queue.Empty:
            return None, None


def _end_wait_for_request(event: Event) -> None:
    """Wake an acceptor that still waits for its A-ASSOCIATE-RQ when its connection closes.

    ``Association.run_reactor`` waits up to the ACSE timeout in ``dul.receive_pdu`` for the
    request. A peer that closes first (Sta2 + Evt17: AA-5), or after a garbage PDU (Sta2 +
    Evt19: AA-1, then Sta13 + Evt17: AR-5), sends the FSM back to Sta1 with no primitive for
    the user, so the thread would live out the timeout (the ARTIM timer closing a silent
    peer, Sta2 + Evt18: AA-2, ends here too). While the requestor primitive is unset the
    thread has not taken a request; ``None`` is what ``receive_pdu`` returns on timeout, so
    the acceptor stops its DUL and closes the socket now.
    """
    if event.assoc.requestor.primitive is None:
        event.assoc.dul.to_user_queue.put(None)  # type: ignore[arg-type]


class BulkRequestHandler(RequestHandler):
    """Creates acceptor associations on a BulkAssociationSocket."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        tune_socket(self.request, self.ae.network_timeout)
        # Re-class the wrapper the parent made: a second wrapper would queue a second
        # "connection open" event. The subclass adds behaviour only, no state.
        assoc.dul.socket.__class__ = BulkAssociationSocket
        EventDrivenDUL.adopt(assoc.dul)
        assoc.dimse.__class__ = WaitingDIMSEProvider
        assoc.bind(evt.EVT_CONN_CLOSE, _end_wait_for_request)
        return assoc


class SharedContexts(list[PresentationContext]):
    """Supported contexts that acceptors share instead of deep-copying per connection.

    ``RequestHandler._create_association`` deep-copies the server's contexts for every
    connection, before the peer has sent a byte: all storage classes in every transfer syntax
    cost ~60 ms of CPU under the GIL, so 200 probes queue 12 s of work ahead of a real sender.
    Negotiation only reads them (``presentation.negotiate_as_acceptor``), and nothing here
    edits an acceptor's contexts.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedContexts:
        return self


class NodeAssociationServer(ThreadedAssociationServer):
    """Threaded server for bursts: a deep backlog, cheap connections, TLS off the accept loop.

    The stock server completes the TLS handshake inside ``accept``: one silent TLS client
    would then stall every other connection until it timed out.
    """

    # socketserver listens with a backlog of 5: a burst of connections overflows it and the
    # kernel drops SYNs, which clients retry only after 1, 3, 7... seconds.
    request_queue_size = socket.SOMAXCONN

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.contexts = SharedContexts(self.contexts)

    def get_request(self) -> tuple[Any, Any]:
        """Accept a connection; wrap it for TLS without handshaking yet."""
        assert self.socket is not None
        client, address = self.socket.accept()
        tune_socket(client, self.ae.network_timeout)
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(
                client, server_side=True, do_handshake_on_connect=False
            )
        return client, address


class SharedPortAssociationServer(NodeAssociationServer):
    """A server whose port other processes of the node bind too (``SO_REUSEPORT``): the kernel
    spreads incoming connections across them, as ``storescp --fork`` spreads associations
    across processes."""

    def server_bind(self) -> None:
        assert self.socket is not None
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class NodeAE(AE):
    """An AE whose association limit counts only live associations.

    Connections that never send an A-ASSOCIATE-RQ (load-balancer probes, port scanners),
    aborted ones waiting for their transport to close, and closed ones whose thread is still
    ending (back in Sta1), cannot use up the limit and lock out a real sender; the ARTIM timer
    closes those that stay open.
    """

    @property
    def active_associations(self) -> list[Association]:
        """Associations that have asked to associate and are not closing."""
        return [
            a
            for a in super().active_associations
            if not (a.is_acceptor and a.dul.state_machine.current_state in _NOT_COUNTED)
        ]
