"""FastAGI server over real sockets, against a client that plays res_agi byte for byte."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterable

import pytest

from agi_bridge.asterisk.agi import CallMetadata, FastAgiServer, PendingCalls, requested_agent
from agi_bridge.protocol.agi import AgiRequest

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def env_block(
    script: str | None = "agent",
    args: Iterable[str] = (),
    *,
    channel: str = "PJSIP/alice-00000001",
    callerid: str = "5551234",
    calleridname: str = "Alice",
    dnid: str = "100",
) -> bytes:
    """The environment res_agi sends: launch_netscript() lines, then setup_env()."""
    lines = ["agi_network: yes"]
    if script:
        lines.append(f"agi_network_script: {script}")
    lines += [
        f"agi_request: agi://127.0.0.1:4573/{script or ''}",
        f"agi_channel: {channel}",
        "agi_language: en",
        "agi_type: PJSIP",
        "agi_uniqueid: 1700000000.7",
        "agi_version: 22.10.1",
        f"agi_callerid: {callerid}",
        f"agi_calleridname: {calleridname}",
        "agi_callingpres: 0",
        "agi_callingani2: 0",
        "agi_callington: 0",
        "agi_callingtns: 0",
        f"agi_dnid: {dnid}",
        "agi_rdnis: unknown",
        "agi_context: agents",
        "agi_extension: 100",
        "agi_priority: 1",
        "agi_enhanced: 0.0",
        "agi_accountcode: ",
        "agi_threadid: 140339271628480",
    ]
    lines += [f"agi_arg_{i}: {a}" for i, a in enumerate(args, 1)]
    return ("\n".join(lines) + "\n\n").encode()


def parse_args(line: str) -> list[str]:
    """res_agi.c parse_args(): whitespace splits, '"' toggles quoting, '\\' escapes."""
    out: list[str] = []
    cur: list[str] | None = None
    quoted = escaped = False
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and cur is None:
                cur = []
            continue
        if ch in " \t" and not quoted and not escaped:
            if cur is not None:
                out.append("".join(cur))
                cur = None
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if cur is None:
            cur = []
        cur.append(ch)
        escaped = False
    if cur is not None:
        out.append("".join(cur))
    return out


class Asterisk:
    """The Asterisk side of one FastAGI connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> Asterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self, timeout: float = 2.0) -> list[str]:
        """Read one command line as res_agi does (strip '\\n' only) and split it."""
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        assert line.endswith(b"\n"), line
        assert not line.endswith(b"\r\n"), "res_agi would keep the \\r in the last argument"
        return parse_args(line[:-1].decode())

    async def closed(self, timeout: float = 2.0) -> bool:
        """True when the server closed the connection (EOF) within *timeout*."""
        data = await asyncio.wait_for(self.reader.read(), timeout)
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pending(clock: FakeClock) -> PendingCalls:
    return PendingCalls(ttl=30.0, clock=clock)


@pytest.fixture
async def server(pending: PendingCalls) -> AsyncIterator[FastAgiServer]:
    srv = FastAgiServer(pending, "127.0.0.1", 0, request_timeout=0.5, header_timeout=0.5)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


async def run_call(port: int, env: bytes) -> dict[str, str]:
    """Play a whole call: send env, answer SET VARIABLEs with 200 result=1 until EOF."""
    ast = await Asterisk.connect(port)
    variables: dict[str, str] = {}
    try:
        await ast.send(env)
        while line := await asyncio.wait_for(ast.reader.readline(), 2.0):
            args = parse_args(line[:-1].decode())
            if args[:2] == ["SET", "VARIABLE"]:
                assert len(args) == 4, args
                variables[args[2]] = args[3]
            await ast.send(b"200 result=1\n")
    finally:
        await ast.close()
    return variables


async def test_registers_call_and_sets_variables(
    server: FastAgiServer, pending: PendingCalls, clock: FakeClock
) -> None:
    variables = await run_call(server.port, env_block("agent", ["sales"]))
    call_id = variables["AGI_BRIDGE_UUID"]
    assert UUID_RE.match(call_id)
    assert variables["AGI_BRIDGE_AGENT"] == "sales"

    meta = pending.claim(call_id)
    assert meta == CallMetadata(
        call_id=call_id,
        channel="PJSIP/alice-00000001",
        uniqueid="1700000000.7",
        caller_id="5551234",
        caller_name="Alice",
        dnid="100",
        extension="100",
        context="agents",
        agent="sales",
        args=("sales",),
        query={},
        language="en",
        registered_at=clock.now,
    )
    assert pending.claim(call_id) is None  # a UUID is claimed once


async def test_agent_from_query(server: FastAgiServer, pending: PendingCalls) -> None:
    variables = await run_call(server.port, env_block("agent?name=support&x=1"))
    assert variables["AGI_BRIDGE_AGENT"] == "support"
    meta = pending.claim(variables["AGI_BRIDGE_UUID"])
    assert meta is not None
    assert (meta.agent, meta.query) == ("support", {"name": "support", "x": "1"})


async def test_no_agent_sets_only_uuid(server: FastAgiServer, pending: PendingCalls) -> None:
    variables = await run_call(server.port, env_block("agent", callerid="unknown"))
    assert list(variables) == ["AGI_BRIDGE_UUID"]
    meta = pending.claim(variables["AGI_BRIDGE_UUID"])
    assert meta is not None
    assert (meta.agent, meta.caller_id) == (None, "")


async def test_claim_accepts_any_uuid_spelling(
    server: FastAgiServer, pending: PendingCalls
) -> None:
    variables = await run_call(server.port, env_block("agent", ["a"]))
    raw = uuid.UUID(variables["AGI_BRIDGE_UUID"])
    assert pending.claim(raw.hex.upper()) is not None  # e.g. from AudioSocket's 16 bytes
    assert pending.claim("not-a-uuid") is None


async def test_env_sent_byte_by_byte(server: FastAgiServer, pending: PendingCalls) -> None:
    ast = await Asterisk.connect(server.port)
    try:
        for b in env_block("agent", ["slow"]):
            await ast.send(bytes([b]))
        assert (await ast.command())[:3] == ["SET", "VARIABLE", "AGI_BRIDGE_UUID"]
        await ast.send(b"200 result=1\n")
        assert (await ast.command())[2:] == ["AGI_BRIDGE_AGENT", "slow"]
        await ast.send(b"200 result=1\n")
        assert await ast.closed()
    finally:
        await ast.close()
    assert len(pending) == 1


async def test_unclaimed_registration_expires(
    server: FastAgiServer, pending: PendingCalls, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    variables = await run_call(server.port, env_block("agent", ["a"], channel="PJSIP/bob-2"))
    clock.now += 29.9
    assert variables["AGI_BRIDGE_UUID"] in pending
    clock.now += 0.2
    with caplog.at_level(logging.INFO, logger="agi_bridge.asterisk.agi"):
        assert pending.claim(variables["AGI_BRIDGE_UUID"]) is None
    assert "expired" in caplog.text
    assert "PJSIP/bob-2" in caplog.text
    assert len(pending) == 0


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",  # a TLS ClientHello-ish
        b"\n",
        b"agi_network: yes\nagi_" + b"x" * 20_000,
    ],
)
async def test_garbage_is_dropped(
    server: FastAgiServer, pending: PendingCalls, garbage: bytes
) -> None:
    ast = await Asterisk.connect(server.port)
    try:
        await ast.send(garbage)
        assert await ast.closed()
    finally:
        await ast.close()
    assert len(pending) == 0
    # The server still serves the next call.
    assert "AGI_BRIDGE_UUID" in await run_call(server.port, env_block("agent", ["a"]))


async def test_unknown_script_gets_verbose_then_close(
    server: FastAgiServer, pending: PendingCalls, caplog: pytest.LogCaptureFixture
) -> None:
    ast = await Asterisk.connect(server.port)
    try:
        await ast.send(env_block("other.agi"))
        args = await ast.command()
        assert args[0] == "VERBOSE"
        assert "other.agi" in args[1]
        await ast.send(b"200 result=1\n")
        assert await ast.closed()
    finally:
        await ast.close()
    assert len(pending) == 0
    assert "unknown script 'other.agi'" in caplog.text


async def test_refused_by_accept(pending: PendingCalls, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[AgiRequest] = []

    def accept(request: AgiRequest) -> str | None:
        seen.append(request)
        return None

    async with FastAgiServer(pending, "127.0.0.1", 0, accept=accept) as srv:
        with caplog.at_level(logging.INFO):
            variables = await run_call(srv.port, env_block("agent", ["nobody"], dnid="999"))
    assert variables == {}  # no UUID: the dialplan falls back (a VERBOSE was answered)
    assert len(pending) == 0
    assert requested_agent(seen[0]) == "nobody"
    assert "refused by accept()" in caplog.text
    assert "dnid=999" in caplog.text


async def test_accept_chooses_agent(pending: PendingCalls) -> None:
    async with FastAgiServer(pending, "127.0.0.1", 0, accept=lambda r: f"agent-{r.dnid}") as srv:
        variables = await run_call(srv.port, env_block("agent", ["ignored"], dnid="42"))
    assert variables["AGI_BRIDGE_AGENT"] == "agent-42"
    meta = pending.claim(variables["AGI_BRIDGE_UUID"])
    assert meta is not None and meta.agent == "agent-42"


async def test_accept_raising_is_contained(
    pending: PendingCalls, caplog: pytest.LogCaptureFixture
) -> None:
    def accept(request: AgiRequest) -> str | None:
        raise RuntimeError("config exploded")

    async with FastAgiServer(pending, "127.0.0.1", 0, accept=accept) as srv:
        assert await run_call(srv.port, env_block("agent", ["a"])) == {}
        assert await run_call(srv.port, env_block("agent", ["a"])) == {}
    assert len(pending) == 0
    assert "config exploded" in caplog.text


async def test_silent_client_is_timed_out(server: FastAgiServer, pending: PendingCalls) -> None:
    ast = await Asterisk.connect(server.port)
    try:
        await ast.send(b"agi_network: yes\nagi_network_script: agent\n")  # never the blank line
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await ast.closed(timeout=3.0)
        assert loop.time() - start < 1.5  # header_timeout=0.5
    finally:
        await ast.close()
    assert len(pending) == 0


async def test_no_reply_to_set_variable_unregisters(
    server: FastAgiServer, pending: PendingCalls
) -> None:
    ast = await Asterisk.connect(server.port)
    try:
        await ast.send(env_block("agent", ["a"]))
        args = await ast.command()
        assert args[2] == "AGI_BRIDGE_UUID"
        assert args[3] in pending  # registered before the variable is set
        assert await ast.closed(timeout=3.0)  # no reply within request_timeout
    finally:
        await ast.close()
    assert len(pending) == 0


@pytest.mark.parametrize(
    "reply", [b"HANGUP\n", b"510 Invalid or unknown command\n", b"200 result=0\n", b"junk\n"]
)
async def test_failed_set_variable_unregisters(
    server: FastAgiServer, pending: PendingCalls, reply: bytes
) -> None:
    ast = await Asterisk.connect(server.port)
    try:
        await ast.send(env_block("agent", ["a"]))
        await ast.command()
        await ast.send(reply)
        assert await ast.closed()
    finally:
        await ast.close()
    assert len(pending) == 0


async def test_hangup_after_env_before_command(
    server: FastAgiServer, pending: PendingCalls
) -> None:
    # HANGUP may already be in flight when the environment ends: it must not be taken
    # as the reply... but it does mean the call is gone, so nothing stays registered.
    ast = await Asterisk.connect(server.port)
    try:
        await ast.send(env_block("agent", ["a"]) + b"HANGUP\n")
        await ast.command()
        await ast.send(b"200 result=1\n")
        assert await ast.closed()
    finally:
        await ast.close()
    assert len(pending) == 0


async def test_client_closes_early(server: FastAgiServer, pending: PendingCalls) -> None:
    ast = await Asterisk.connect(server.port)
    await ast.send(env_block("agent", ["a"])[:50])
    await ast.close()
    await asyncio.sleep(0.05)
    assert len(pending) == 0
    assert "AGI_BRIDGE_UUID" in await run_call(server.port, env_block("agent", ["a"]))


async def test_connection_limit(pending: PendingCalls, caplog: pytest.LogCaptureFixture) -> None:
    async with FastAgiServer(pending, "127.0.0.1", 0, max_connections=1) as srv:
        # a connection that sent its environment and waits for a reply holds its slot...
        busy = await Asterisk.connect(srv.port)
        try:
            await busy.send(env_block("agent", ["a"]))
            assert (await busy.command())[:2] == ["SET", "VARIABLE"]
            extra = await Asterisk.connect(srv.port)
            try:
                assert await extra.closed(timeout=0.5)
            finally:
                await extra.close()
        finally:
            await busy.close()
        assert "refused: 1 connections from this source" in caplog.text
        # ...an idle one (nothing sent yet) gives way to a new connection
        idle = await Asterisk.connect(srv.port)
        try:
            await idle.send(b"agi_network: yes\n")
            await asyncio.sleep(0.05)
            assert "AGI_BRIDGE_UUID" in await run_call(srv.port, env_block("agent", ["a"]))
            assert await idle.closed(timeout=0.5)
        finally:
            await idle.close()


async def test_close_ends_active_connections(pending: PendingCalls) -> None:
    srv = FastAgiServer(pending, "127.0.0.1", 0, request_timeout=30.0)
    await srv.start()
    port = srv.port
    ast = await Asterisk.connect(port)
    try:
        await ast.send(b"agi_network: yes\n")
        await asyncio.sleep(0.05)
        await asyncio.wait_for(srv.close(), 1.0)
        assert await ast.closed(timeout=1.0)
    finally:
        await ast.close()
    with pytest.raises(OSError):
        await Asterisk.connect(port)


async def test_pending_calls_bounded(caplog: pytest.LogCaptureFixture) -> None:
    pending = PendingCalls(max_pending=2, clock=FakeClock())
    async with FastAgiServer(pending, "127.0.0.1", 0) as srv:
        first = (await run_call(srv.port, env_block("agent", ["a"])))["AGI_BRIDGE_UUID"]
        assert "AGI_BRIDGE_UUID" in await run_call(srv.port, env_block("agent", ["b"]))
        third = (await run_call(srv.port, env_block("agent", ["c"])))["AGI_BRIDGE_UUID"]
    # never more than max_pending: the newest call is kept, the oldest one dropped
    assert len(pending) == 2 and third in pending and first not in pending
    assert "2 pending in all, dropped the oldest" in caplog.text


def test_pending_calls_rules() -> None:
    clock = FakeClock()
    pending = PendingCalls(ttl=10, clock=clock)
    meta = CallMetadata(
        call_id=str(uuid.uuid4()),
        channel="c",
        uniqueid="u",
        caller_id="",
        caller_name="",
        dnid="",
        extension="",
        context="",
        agent=None,
        args=(),
        query={},
        language="en",
        registered_at=clock.now,
    )
    assert pending.register(meta)
    with pytest.raises(ValueError, match="already registered"):
        pending.register(meta)
    with pytest.raises(ValueError, match="canonical"):
        pending.register(CallMetadata(**{**meta.__dict__, "call_id": meta.call_id.upper()}))
    clock.now += 10
    assert pending.purge() == 1
    assert len(pending) == 0
