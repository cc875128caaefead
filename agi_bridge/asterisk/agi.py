"""FastAGI server: tells the coming AudioSocket session who is calling.

Only a UUID crosses AudioSocket, so the dialplan first runs this FastAGI script::

    same => n,AGI(agi://BRIDGE:4573/agent,AGENTNAME)      ; or agi://BRIDGE:4573/agent?name=AGENTNAME
    same => n,GotoIf($["${AGI_BRIDGE_UUID}" = ""]?fallback)
    same => n,AudioSocket(${AGI_BRIDGE_UUID},${AGI_BRIDGE_AUDIOSOCKET})

For each connection the server reads the environment, picks the agent, creates a fresh
UUID, registers the call metadata in :class:`PendingCalls` *before* answering (so the
AudioSocket connection that follows can always claim it), sets ``AGI_BRIDGE_AUDIOSOCKET``
(the host:port of *this* process's AudioSocket listener: with ``serve --workers N`` the
registration and the audio of a call must meet in the same process, and with several
bridge hosts on the same one), ``AGI_BRIDGE_UUID`` (and ``AGI_BRIDGE_AGENT``) on the
channel and closes the connection, which returns the channel
to the dialplan. Anything unexpected is logged and ends that connection only; nothing is
registered unless ``AGI_BRIDGE_UUID`` is being set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from agi_bridge.errors import AgiError
from agi_bridge.protocol import agi as proto

__all__ = [
    "AGENT_VARIABLE",
    "AUDIOSOCKET_VARIABLE",
    "SCRIPT",
    "UUID_VARIABLE",
    "CallMetadata",
    "FastAgiServer",
    "PendingCalls",
    "requested_agent",
]

log = logging.getLogger(__name__)

SCRIPT = "agent"
UUID_VARIABLE = "AGI_BRIDGE_UUID"
AGENT_VARIABLE = "AGI_BRIDGE_AGENT"
AUDIOSOCKET_VARIABLE = "AGI_BRIDGE_AUDIOSOCKET"
_READ_SIZE = 4096


@dataclass(frozen=True)
class CallMetadata:
    """What the FastAGI request told us about a call, keyed by the UUID we gave it."""

    call_id: str  # canonical lowercase 8-4-4-4-12 UUID, as sent to AudioSocket
    channel: str  # e.g. PJSIP/alice-00000001: the name AMI actions need
    uniqueid: str
    caller_id: str  # "" when Asterisk reports "unknown"
    caller_name: str
    dnid: str
    extension: str
    context: str
    agent: str | None
    args: tuple[str, ...]
    query: dict[str, str] = field(hash=False)
    language: str
    registered_at: float  # monotonic clock of the PendingCalls registry

    @classmethod
    def from_request(
        cls,
        request: proto.AgiRequest,
        *,
        call_id: str,
        agent: str | None,
        registered_at: float,
    ) -> CallMetadata:
        return cls(
            call_id=call_id,
            channel=request.channel,
            uniqueid=request.uniqueid,
            caller_id=request.callerid,
            caller_name=request.calleridname,
            dnid=request.dnid,
            extension=request.extension,
            context=request.context,
            agent=agent,
            args=tuple(request.args),
            query=request.query,
            language=request.language,
            registered_at=registered_at,
        )


def requested_agent(request: proto.AgiRequest) -> str | None:
    """The agent the dialplan asked for: ``AGI(.../agent,NAME)`` or ``.../agent?name=NAME``."""
    args = request.args
    if args and args[0]:
        return args[0]
    return request.query.get("name") or None


def canonical_uuid(value: str) -> str | None:
    """``value`` as lowercase 8-4-4-4-12, or None if it is not a UUID."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


class PendingCalls:
    """Calls announced over FastAGI, waiting for their AudioSocket connection.

    A registration is claimed once (``claim`` removes it). Registrations never claimed
    (the caller hung up between AGI and AudioSocket, or the dialplan fell back) expire
    after ``ttl`` seconds. Expiry runs on ``register``/``claim`` against an injected clock,
    so there is no background task and tests can move time by hand.
    """

    def __init__(
        self,
        *,
        ttl: float = 30.0,
        max_pending: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or max_pending <= 0:
            raise ValueError("ttl and max_pending must be positive")
        self.ttl = ttl
        self.max_pending = max_pending
        self.clock = clock
        # Insertion order is expiry order (same ttl, monotonic clock): purge pops the front.
        self._calls: dict[str, tuple[float, CallMetadata]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, call_id: object) -> bool:
        return isinstance(call_id, str) and canonical_uuid(call_id) in self._calls

    def register(self, meta: CallMetadata) -> bool:
        """Add *meta*; False (and a warning) when ``max_pending`` calls are waiting."""
        self.purge()
        call_id = canonical_uuid(meta.call_id)
        if call_id != meta.call_id:
            raise ValueError(f"call_id must be a lowercase canonical UUID: {meta.call_id!r}")
        if call_id in self._calls:
            raise ValueError(f"call_id already registered: {call_id}")
        if len(self._calls) >= self.max_pending:
            log.warning(
                "pending calls full (%d): refusing call_id=%s channel=%s",
                self.max_pending,
                call_id,
                meta.channel,
            )
            return False
        self._calls[call_id] = (self.clock() + self.ttl, meta)
        return True

    def claim(self, call_id: str) -> CallMetadata | None:
        """Remove and return the metadata for *call_id* (any UUID spelling), or None."""
        self.purge()
        key = canonical_uuid(call_id)
        if key is None:
            return None
        entry = self._calls.pop(key, None)
        return None if entry is None else entry[1]

    def purge(self) -> int:
        """Drop expired registrations; returns how many."""
        now = self.clock()
        expired = 0
        while self._calls:
            call_id, (deadline, meta) = next(iter(self._calls.items()))
            if deadline > now:
                break
            del self._calls[call_id]
            expired += 1
            log.info(
                "pending call expired unclaimed after %.0fs: call_id=%s channel=%s",
                self.ttl,
                call_id,
                meta.channel,
            )
        return expired


Accept = Callable[[proto.AgiRequest], "str | None"]


class _Refused(Exception):
    """This connection ends without registering a call (already logged)."""


class FastAgiServer:
    """asyncio FastAGI server that registers call identity in *pending*.

    ``accept(request)`` (optional) returns the agent name to use, or None to refuse the
    call; without it the agent is :func:`requested_agent`. Refused or malformed requests
    leave ``AGI_BRIDGE_UUID`` unset, so the dialplan can fall back.
    """

    def __init__(
        self,
        pending: PendingCalls,
        host: str = "127.0.0.1",
        port: int = 4573,
        *,
        accept: Accept | None = None,
        request_timeout: float = 5.0,
        max_connections: int = 100,
        script: str = SCRIPT,
        advertise: Callable[[str], str] | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.pending = pending
        self.host = host
        self._port = port
        self.accept = accept
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.script = script
        # local address of the AGI connection -> "host:port" of our AudioSocket listener
        self.advertise = advertise
        # several worker processes share the FastAGI port; the kernel spreads connections
        self.reuse_port = reuse_port
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def serving(self) -> bool:
        """True while the listening socket accepts connections."""
        return self._server is not None and self._server.is_serving()

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("FastAgiServer already started")
        self._server = await asyncio.start_server(
            self._on_connection,
            self.host,
            self._port,
            reuse_address=True,
            reuse_port=self.reuse_port or None,
        )
        log.info("FastAGI listening on %s:%d (script %r)", self.host, self.port, self.script)

    async def close(self) -> None:
        """Stop listening and end the connections in progress."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
        log.info("FastAGI server closed")

    async def __aenter__(self) -> FastAgiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = _peer(writer)
        task = asyncio.current_task()
        if self._server is None or task is None:
            await _close(writer)  # accepted while closing
            return
        if len(self._handlers) >= self.max_connections:
            # Refuse rather than queue: Asterisk waits on this in the call path, and a
            # closed connection lets the dialplan fall back at once.
            log.warning(
                "FastAGI from %s refused: %d connections in progress", peer, len(self._handlers)
            )
            await _close(writer)
            return
        self._handlers.add(task)
        try:
            await _Session(self, reader, writer, peer).run()
        except _Refused:
            pass
        except _HangupError as exc:
            log.info("FastAGI from %s ended: %s", peer, exc)
        except (AgiError, ConnectionError, EOFError) as exc:
            log.warning("FastAGI from %s failed: %s", peer, str(exc) or type(exc).__name__)
        except Exception:
            # A bug in one session (or in accept()) must not take the server down.
            log.exception("FastAGI from %s: unexpected error", peer)
        finally:
            self._handlers.discard(task)
            await _close(writer)


class _Session:
    """One FastAGI connection, from environment to closing."""

    def __init__(
        self,
        server: FastAgiServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.replies = proto.AgiReplyParser()
        self.pending_events: list[proto.AgiEvent] = []

    async def run(self) -> None:
        server = self.server
        try:
            async with asyncio.timeout(server.request_timeout):
                request = await self._read_request()
        except TimeoutError:
            raise AgiError(
                f"no complete AGI environment within {server.request_timeout}s"
            ) from None
        channel = request.channel or "?"

        if request.network_script != server.script:
            log.warning(
                "FastAGI from %s channel=%s: unknown script %r (expected %r)",
                self.peer,
                channel,
                request.network_script,
                server.script,
            )
            await self._say(f"agi_bridge: unknown FastAGI script {request.network_script!r}")
            raise _Refused

        agent = await self._choose_agent(request)

        call_id = str(uuid.uuid4())
        meta = CallMetadata.from_request(
            request, call_id=call_id, agent=agent, registered_at=server.pending.clock()
        )
        # Register before telling Asterisk: AudioSocket may connect the moment the
        # variable is set and our reply is read.
        if not server.pending.register(meta):
            await self._say("agi_bridge: too many pending calls, call refused")
            raise _Refused
        try:
            if server.advertise is not None:
                local = self.writer.get_extra_info("sockname")
                address = server.advertise(str(local[0]))
                if address:  # "" = not told: the dialplan uses its own settings
                    await self._set(AUDIOSOCKET_VARIABLE, address)
            await self._set(UUID_VARIABLE, call_id)
            if agent:
                await self._set(AGENT_VARIABLE, agent)
        except BaseException:
            # The dialplan may not have the UUID; never leave a claimable orphan behind.
            server.pending.claim(call_id)
            raise
        log.info(
            "FastAGI call registered: call_id=%s channel=%s caller=%s agent=%s",
            call_id,
            channel,
            request.callerid or "-",
            agent or "-",
        )

    async def _read_request(self) -> proto.AgiRequest:
        parser = proto.AgiRequestParser()
        while True:
            data = await self.reader.read(_READ_SIZE)
            if not data:
                raise EOFError("connection closed before the end of the AGI environment")
            request = parser.feed(data)
            if request is not None:
                if parser.unparsed:
                    self.pending_events.extend(self.replies.feed(parser.unparsed))
                return request

    async def _choose_agent(self, request: proto.AgiRequest) -> str | None:
        accept = self.server.accept
        wanted = requested_agent(request)
        if accept is None:
            return wanted
        agent = accept(request)
        if not agent:
            log.info(
                "FastAGI call refused by accept(): channel=%s caller=%s dnid=%s agent=%r",
                request.channel or "?",
                request.callerid or "-",
                request.dnid or "-",
                wanted,
            )
            await self._say(f"agi_bridge: call refused (agent {wanted!r})")
            raise _Refused
        return agent

    async def _command(self, line: bytes) -> proto.AgiReply:
        """Send one command and wait (bounded) for its reply."""
        verb = " ".join(line.decode("utf-8", "replace").split()[:2])
        self.writer.write(line)
        timeout = self.server.request_timeout
        try:
            async with asyncio.timeout(timeout):
                await self.writer.drain()
                while not self.pending_events:
                    data = await self.reader.read(_READ_SIZE)
                    if not data:
                        raise EOFError(f"connection closed while waiting for the reply to {verb}")
                    self.pending_events.extend(self.replies.feed(data))
        except TimeoutError:
            raise AgiError(f"no reply to {verb} within {timeout}s") from None
        event = self.pending_events.pop(0)
        if isinstance(event, proto.AgiHangup):
            raise _HangupError("channel hung up (HANGUP)")
        return event

    async def _set(self, name: str, value: str) -> None:
        reply = await self._command(proto.set_variable(name, value))
        if not (reply.ok and reply.result == "1"):
            raise AgiError(f"SET VARIABLE {name} failed: {reply.code} {reply.text}")

    async def _say(self, message: str) -> None:
        """Best effort VERBOSE on the Asterisk console before we hang up on it."""
        with contextlib.suppress(AgiError, ConnectionError, EOFError):
            await self._command(proto.verbose(message, 1))


class _HangupError(AgiError):
    """Asterisk sent HANGUP while we waited for a reply."""


def _peer(writer: asyncio.StreamWriter) -> str:
    info = writer.get_extra_info("peername")
    if isinstance(info, tuple) and len(info) >= 2:
        return f"{info[0]}:{info[1]}"
    return str(info)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
