"""FastAGI server: tells the coming AudioSocket session who is calling.

Only a UUID crosses AudioSocket, so the dialplan first runs this FastAGI script::

    same => n,AGI(agi://BRIDGE:4573/agent,AGENTNAME)      ; or agi://BRIDGE:4573/agent?name=AGENTNAME
    same => n,GotoIf($["${AGI_BRIDGE_UUID}" = ""]?fallback)
    same => n,AudioSocket(${AGI_BRIDGE_UUID},BRIDGE:9092)

For each connection the server reads the environment, picks the agent, creates a fresh
UUID, registers the call metadata in :class:`PendingCalls` *before* answering (so the
AudioSocket connection that follows can always claim it), sets ``AGI_BRIDGE_UUID`` (and
``AGI_BRIDGE_AGENT``) on the channel and closes the connection, which returns the channel
to the dialplan. Anything unexpected is logged and ends that connection only; nothing is
registered unless ``AGI_BRIDGE_UUID`` is being set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import uuid
from collections.abc import Callable

from agi_bridge.asterisk.admission import LOOPBACK, Admission, Throttle, Ticket
from agi_bridge.asterisk.pending import (
    SECRET_PARAMETER,
    CallMetadata,
    CallOutcomes,
    PendingCalls,
    requested_agent,
)
from agi_bridge.errors import AgiError
from agi_bridge.protocol import agi as proto

__all__ = [
    "AGENT_VARIABLE",
    "SCRIPT",
    "UUID_VARIABLE",
    "CallMetadata",
    "FastAgiServer",
    "PendingCalls",
    "requested_agent",
]

log = logging.getLogger(__name__)

SCRIPT = "agent"
# AGI(agi://HOST:PORT/status,UUID) after AudioSocket(): sets AGI_BRIDGE_STATUS from what
# the bridge recorded, for when AMI could not set it (down, or not configured)
STATUS_SCRIPT = "status"
STATUS_VARIABLE = "AGI_BRIDGE_STATUS"
UUID_VARIABLE = "AGI_BRIDGE_UUID"
AGENT_VARIABLE = "AGI_BRIDGE_AGENT"
_READ_SIZE = 4096


Accept = Callable[[proto.AgiRequest], "str | None"]


class _Refused(Exception):
    """This connection ends without registering a call (already logged)."""


class FastAgiServer:
    """asyncio FastAGI server that registers call identity in *pending*.

    ``accept(request)`` (optional) returns the agent name to use, or None to refuse the
    call; without it the agent is :func:`requested_agent`. Refused or malformed requests
    leave ``AGI_BRIDGE_UUID`` unset, so the dialplan can fall back.

    Only peers that ``admission`` permits get in (default: loopback), bounded per source
    and in total; the environment must arrive within ``header_timeout`` seconds. With a
    ``secret``, the request URL must carry it (``agi://HOST:PORT/agent?secret=VALUE``;
    compared in constant time, never logged). ``refuse_new_calls()`` (shutdown) answers
    every later request at once without a UUID, so the dialplan falls back immediately.
    """

    def __init__(
        self,
        pending: PendingCalls,
        host: str = "127.0.0.1",
        port: int = 4573,
        *,
        accept: Accept | None = None,
        request_timeout: float = 5.0,
        header_timeout: float = 2.0,
        max_connections: int = 100,
        admission: Admission | None = None,
        secret: str = "",
        script: str = SCRIPT,
        outcomes: CallOutcomes | None = None,
    ) -> None:
        self.pending = pending
        self.host = host
        self._port = port
        self.accept = accept
        self.request_timeout = request_timeout
        self.header_timeout = header_timeout
        self.admission = (
            admission
            if admission is not None
            else Admission(
                "FastAGI", LOOPBACK, max_connections=max_connections, max_per_source=max_connections
            )
        )
        self._secret = secret  # never logged
        self.script = script
        self.outcomes = outcomes if outcomes is not None else CallOutcomes()
        self.refusing = ""  # why new calls are refused ("" = accepting)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._throttle = Throttle(log)

    @property
    def max_connections(self) -> int:
        return self.admission.max_connections

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

    def refuse_new_calls(self, reason: str = "shutting down") -> None:
        """From now on, answer every request without a UUID (the dialplan falls back)."""
        if not self.refusing:
            log.info("FastAGI: refusing new calls (%s)", reason)
        self.refusing = reason

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("FastAgiServer already started")
        self._server = await asyncio.start_server(
            self._on_connection, self.host, self._port, reuse_address=True
        )
        log.info("FastAGI listening on %s:%d (script %r)", self.host, self.port, self.script)
        log.info(
            "FastAGI accepts %s, secret %s",
            ", ".join(str(n) for n in self.admission.allowed),
            "required" if self._secret else "not set",
        )

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
        # Refuse rather than queue: Asterisk waits on this in the call path, and a closed
        # connection lets the dialplan fall back at once.
        ticket = self.admission.admit(writer.get_extra_info("peername"), task.cancel)
        if ticket is None:
            _abort(writer)
            return
        self._handlers.add(task)
        try:
            await _Session(self, reader, writer, peer, ticket).run()
        except asyncio.CancelledError:
            # evicted, or the server is closing: end quietly (a task that ends cancelled
            # makes asyncio's stream callback log a spurious error)
            if not ticket.evicted and self._server is not None:
                raise
        except _Refused:
            pass
        except _HangupError as exc:
            log.info("FastAGI from %s ended: %s", peer, exc)
        except (AgiError, ConnectionError, EOFError) as exc:
            self._throttle(
                f"fail {ticket.source}",
                logging.WARNING,
                "FastAGI from %s failed: %s",
                peer,
                str(exc) or type(exc).__name__,
            )
        except Exception:
            # A bug in one session (or in accept()) must not take the server down.
            log.exception("FastAGI from %s: unexpected error", peer)
        finally:
            ticket.release()
            self._handlers.discard(task)
            await _close(writer)

    def secret_ok(self, request: proto.AgiRequest) -> bool:
        if not self._secret:
            return True
        given = request.query.get(SECRET_PARAMETER, "")
        return hmac.compare_digest(given.encode(), self._secret.encode())


class _Session:
    """One FastAGI connection, from environment to closing."""

    def __init__(
        self,
        server: FastAgiServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
        ticket: Ticket,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.ticket = ticket
        self.replies = proto.AgiReplyParser()
        self.pending_events: list[proto.AgiEvent] = []

    async def run(self) -> None:
        server = self.server
        try:
            async with asyncio.timeout(server.header_timeout):
                request = await self._read_request()
        except TimeoutError:
            raise AgiError(f"no complete AGI environment within {server.header_timeout}s") from None
        self.ticket.ready()
        channel = request.channel or "?"

        if request.network_script == STATUS_SCRIPT and server.secret_ok(request):
            await self._status(request)  # answered while draining too: calls still end
            return
        if server.refusing:
            log.info("FastAGI channel=%s refused: %s", channel, server.refusing)
            await self._say(f"agi_bridge: {server.refusing}, call refused")
            raise _Refused
        if not server.secret_ok(request):
            server._throttle(
                f"secret {self.ticket.source}",
                logging.WARNING,
                "FastAGI from %s channel=%s refused: missing or wrong secret in the AGI URL",
                self.peer,
                channel,
            )
            raise _Refused

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
        if not server.pending.register(meta, source=str(self.ticket.source)):
            await self._say("agi_bridge: too many pending calls, call refused")
            raise _Refused
        try:
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

    async def _status(self, request: proto.AgiRequest) -> None:
        """``status,UUID``: set AGI_BRIDGE_STATUS to how that call ended, when known."""
        wanted = (request.args[0] if request.args else "") or request.query.get("uuid", "")
        outcome = self.server.outcomes.take(wanted)
        log.info(
            "FastAGI status of call %s for channel=%s: %s",
            wanted or "?",
            request.channel or "?",
            outcome or "unknown",
        )
        if outcome:  # unknown: leave the variable alone (AMI may have set it)
            await self._set(STATUS_VARIABLE, outcome)

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


def _abort(writer: asyncio.StreamWriter) -> None:
    """Drop a refused connection at once (nothing to say to a peer we do not serve)."""
    writer.transport.abort()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
