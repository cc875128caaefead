"""The AudioSocket TCP server: one ``Call`` per connection from Asterisk.

Thin: it admits connections, enforces the concurrent-call limit and hands each stream to
a factory that builds and runs the call. The call itself owns the connection from then on.

A new connection first waits in a gate (:class:`_UuidGate`, a plain asyncio Protocol)
until its first frame, the 16-byte UUID, has arrived. Asterisk sends it at once, so a
socket that stays silent is not a call: it is closed after ``uuid_timeout`` seconds, is
evicted first when the listener is full (see admission.py), and never holds one of the
``max_calls`` slots. Only then does the connection become a stream (the bytes read so far
are handed over untouched) and count as a call.

A call over ``max_calls`` gets an AudioSocket hangup frame and a clean close (our FIN
after Asterisk's, everything it sent read first), never a TCP reset: AudioSocket() then
returns and the dialplan continues to its fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import cast

from agi_bridge.asterisk.admission import LOOPBACK, Admission, Throttle, Ticket
from agi_bridge.protocol import audiosocket as asock

log = logging.getLogger(__name__)

CallRunner = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

_UUID_FRAME_SIZE = 3 + 16  # type 0x01, length 16, the UUID
_STREAM_LIMIT = 65536
# A refused connection: how long and how much we read (and drop) waiting for Asterisk to
# close after our hangup frame, so that closing never discards unread data (a reset).
_REFUSE_LINGER_S = 2.0
_REFUSE_MAX_BYTES = 1 << 20


class AudioSocketServer:
    def __init__(
        self,
        run_call: CallRunner,
        host: str,
        port: int,
        *,
        max_calls: int,
        admission: Admission | None = None,
        uuid_timeout: float = 2.0,
    ) -> None:
        self._run_call = run_call
        self._host = host
        self._port = port
        self.max_calls = max_calls
        self.uuid_timeout = uuid_timeout
        self.admission = (
            admission
            if admission is not None
            else Admission(
                "AudioSocket",
                LOOPBACK,
                max_connections=max_calls + 100,
                max_per_source=max_calls + 100,
            )
        )
        self.refused_calls = 0  # over max_calls or shutting down: hangup frame, clean close
        self.refusing = False  # shutting down: every new call is refused
        self._server: asyncio.Server | None = None
        self._active: set[asyncio.Task[None]] = set()
        self._gates: set[_UuidGate] = set()
        self._throttle = Throttle(log)

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def serving(self) -> bool:
        """True while the listening socket accepts connections."""
        return self._server is not None and self._server.is_serving()

    @property
    def active_calls(self) -> int:
        return len(self._active)

    @property
    def waiting_connections(self) -> int:
        """Connections that have not sent their UUID yet."""
        return len(self._gates)

    def refuse_new_calls(self) -> None:
        """From now on, answer every new call with a hangup frame (the dialplan falls back)."""
        self.refusing = True

    async def wait_idle(self, timeout: float) -> bool:
        """Wait up to *timeout* s until no call runs; True when none is left."""
        if self._active:
            await asyncio.wait(set(self._active), timeout=timeout)
        return not self._active

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _UuidGate(self), self._host, self._port, reuse_address=True
        )
        log.info("AudioSocket listening on %s:%d", self._host, self.port)
        log.info("AudioSocket accepts %s", ", ".join(str(n) for n in self.admission.allowed))

    def _start_call(self, transport: asyncio.Transport, head: bytes, ticket: Ticket) -> None:
        """The UUID arrived: make the connection a stream and run the call on it."""
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # 20 ms frames must leave at once, not wait for Nagle to batch them
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_STREAM_LIMIT, loop=loop)

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await self._handle(reader, writer)
            finally:
                ticket.release()

        protocol = asyncio.StreamReaderProtocol(reader, run, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(head)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing or len(self._active) >= self.max_calls or self._server is None:
            await self._refuse(reader, writer)
            return
        task = asyncio.current_task()
        assert task is not None
        self._active.add(task)
        try:
            await self._run_call(reader, writer)
        finally:
            self._active.discard(task)

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.refused_calls += 1
        if self.refusing:
            self._throttle("refusing", logging.INFO, "refusing AudioSocket call: shutting down")
        else:
            self._throttle(
                "full",
                logging.WARNING,
                "refusing AudioSocket call: %d calls active (max_calls)",
                len(self._active),
            )
        try:
            writer.write(asock.hangup_frame())  # the dialplan continues to its fallback
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(_REFUSE_LINGER_S):
                dropped = 0
                while dropped < _REFUSE_MAX_BYTES:
                    data = await reader.read(65536)
                    if not data:
                        break
                    dropped += len(data)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close(self, grace: float = 5.0) -> None:
        """Stop listening, then give live calls ``grace`` seconds before cancelling them."""
        if self._server is not None:
            self._server.close()
        for gate in list(self._gates):
            gate.abort()
        if self._active:
            _, pending = await asyncio.wait(set(self._active), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=grace)
        if self._server is not None:
            await self._server.wait_closed()


class _UuidGate(asyncio.Protocol):
    """A new connection until its UUID frame is complete (then: ``_start_call``)."""

    def __init__(self, server: AudioSocketServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.ticket: Ticket | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, but not always an asyncio.Transport subclass: uvloop's
        # TCPTransport implements the same interface without inheriting from it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.ticket = self.server.admission.admit(
            transport.get_extra_info("peername"), transport.abort
        )
        if self.ticket is None:
            transport.abort()
            return
        self.server._gates.add(self)
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.server.uuid_timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self.ticket is None or self.transport is None:
            return
        self.buffer += data
        if len(self.buffer) >= 3 and (
            self.buffer[0] != asock.Kind.UUID or self.buffer[1:3] != b"\x00\x10"
        ):
            self._drop("first frame is not a UUID frame")
            return
        if len(self.buffer) < _UUID_FRAME_SIZE:
            return
        transport, ticket, head = self.transport, self.ticket, bytes(self.buffer)
        self._leave()
        ticket.ready()
        self.server._start_call(transport, head, ticket)

    def eof_received(self) -> bool:
        self._drop("closed before the UUID")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        ticket = self.ticket
        self._leave()
        if ticket is not None:
            ticket.release()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _timed_out(self) -> None:
        self._drop(f"no UUID within {self.server.uuid_timeout}s")

    def _drop(self, why: str) -> None:
        ticket = self.ticket
        if ticket is not None:
            self.server._throttle(
                f"gate {ticket.source}",
                logging.INFO,
                "AudioSocket connection from %s closed: %s",
                ticket.source,
                why,
            )
        self.abort()

    def _leave(self) -> None:
        """No longer waiting: stop the timer, leave the server's set of gates."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.server._gates.discard(self)
        self.ticket = None
        self.transport = None
