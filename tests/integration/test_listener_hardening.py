"""Floods and strangers on the FastAGI and AudioSocket listeners, over real sockets.

Every test here reproduces an item of issue 12 that failed before the fix: only Asterisk's
addresses get in, a FastAGI URL secret is checked, idle sockets cannot starve real calls,
a registration flood from one peer cannot push out another peer's calls, a refused call
gets a hangup frame and a clean close (no TCP reset), and shutdown refuses new calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from agi_bridge.asterisk.admission import Admission
from agi_bridge.asterisk.agi import FastAgiServer, PendingCalls
from agi_bridge.protocol import audiosocket as asock
from tests.integration.conftest import BridgeFactory, make_config
from tests.integration.helpers import agi_request, registered_caller, until
from tests.integration.test_fastagi_server import env_block, parse_args

SECRET = "s3cret-Value-42"


async def agi_call(
    port: int,
    env: bytes,
    *,
    host: str = "127.0.0.1",
    local: str | None = None,
    timeout: float = 5.0,
) -> dict[str, str] | None:
    """Asterisk's side of one FastAGI request from address *local*: the variables set,
    or None when the server dropped the connection without a word."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    if local is not None:
        sock.bind((local, 0))
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock)
    variables: dict[str, str] = {}
    spoke = False
    try:
        writer.write(env)
        async with asyncio.timeout(timeout):
            while line := await reader.readline():
                spoke = True
                args = parse_args(line[:-1].decode())
                if args[:2] == ["SET", "VARIABLE"]:
                    variables[args[2]] = args[3]
                writer.write(b"200 result=1\n")
    except ConnectionResetError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return variables if spoke else None


@pytest.fixture
async def fastagi() -> AsyncIterator[FastAgiServer]:
    pending = PendingCalls(max_pending=1000, max_per_source=500)
    admission = Admission("FastAGI", ["127.0.0.1/32"], max_connections=100, max_per_source=100)
    srv = FastAgiServer(pending, "127.0.0.1", 0, admission=admission, header_timeout=1.0)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


# ------------------------------------------------------------------------ FastAGI


async def test_fastagi_only_from_asterisk_addresses(fastagi: FastAgiServer) -> None:
    # 127.0.0.2 is loopback too, but not in the configured addresses (127.0.0.1/32)
    assert await agi_call(fastagi.port, env_block("agent"), local="127.0.0.2") is None
    assert len(fastagi.pending) == 0 and fastagi.admission.refused == 1
    answer = await agi_call(fastagi.port, env_block("agent"), local="127.0.0.1")
    assert answer is not None and "AGI_BRIDGE_UUID" in answer


async def test_fastagi_ipv6_addresses() -> None:
    pending = PendingCalls()
    only_v4 = Admission("FastAGI", ["127.0.0.0/8"])
    async with FastAgiServer(pending, "::1", 0, admission=only_v4) as srv:
        assert await agi_call(srv.port, env_block("agent"), host="::1") is None
    v6 = Admission("FastAGI", ["::1"])
    async with FastAgiServer(pending, "::1", 0, admission=v6) as srv:
        answer = await agi_call(srv.port, env_block("agent"), host="::1")
        assert answer is not None and "AGI_BRIDGE_UUID" in answer


async def test_fastagi_url_secret(caplog: pytest.LogCaptureFixture) -> None:
    pending = PendingCalls()
    async with FastAgiServer(pending, "127.0.0.1", 0, secret=SECRET) as srv:
        assert not await agi_call(srv.port, env_block("agent"))
        assert not await agi_call(srv.port, env_block("agent?secret=wrong"))
        assert not await agi_call(srv.port, env_block(f"agent?secret={SECRET}x"))
        assert len(pending) == 0
        answer = await agi_call(srv.port, env_block(f"agent?secret={SECRET}&name=sales"))
        assert answer is not None and "AGI_BRIDGE_UUID" in answer
        meta = pending.claim(answer["AGI_BRIDGE_UUID"])
    assert meta is not None and meta.query == {"name": "sales"}  # the secret is not kept
    assert "missing or wrong secret" in caplog.text
    assert SECRET not in caplog.text


async def test_idle_fastagi_connections_do_not_block_asterisk(fastagi: FastAgiServer) -> None:
    idle = [await asyncio.open_connection("127.0.0.1", fastagi.port) for _ in range(150)]
    try:
        await asyncio.sleep(0.1)
        start = time.monotonic()
        answer = await agi_call(fastagi.port, env_block("agent"), timeout=2.0)
        assert answer is not None and "AGI_BRIDGE_UUID" in answer
        assert time.monotonic() - start < 1.0  # not after the idle ones timed out
        assert len(fastagi.admission) <= fastagi.admission.max_connections
    finally:
        for _, writer in idle:
            writer.close()


async def test_idle_fastagi_connection_is_closed_after_the_header_timeout(
    fastagi: FastAgiServer,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", fastagi.port)
    try:
        writer.write(b"agi_network: yes\n")
        start = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert time.monotonic() - start < 3.0  # header_timeout=1.0
    finally:
        writer.close()


async def test_registration_flood_from_one_peer_spares_the_others(
    fastagi: FastAgiServer,
) -> None:
    fastagi.admission.allowed = Admission("x", ["127.0.0.0/8"]).allowed
    before = await agi_call(fastagi.port, env_block("agent"), local="127.0.0.1")
    assert before is not None
    flooder = "127.0.0.2"

    async def one() -> None:
        await agi_call(fastagi.port, env_block("agent", channel="PJSIP/x"), local=flooder)

    start = time.monotonic()
    for _ in range(10):  # 1,000 registrations in bursts of 100
        await asyncio.gather(*(one() for _ in range(100)))
    flood_s = time.monotonic() - start
    pending = fastagi.pending
    assert len(pending) <= pending.max_pending
    # the flood evicted only its own registrations: the other peer's call is still there
    assert before["AGI_BRIDGE_UUID"] in pending
    after = await agi_call(fastagi.port, env_block("agent"), local="127.0.0.1", timeout=2.0)
    assert after is not None and after["AGI_BRIDGE_UUID"] in pending
    assert pending.claim(before["AGI_BRIDGE_UUID"]) is not None
    assert flood_s < 30  # generous: the point is the result, not the speed


async def test_refuse_new_calls_answers_at_once(fastagi: FastAgiServer) -> None:
    fastagi.refuse_new_calls("shutting down")
    start = time.monotonic()
    answer = await agi_call(fastagi.port, env_block("agent"), timeout=3.0)
    assert answer == {}  # answered (VERBOSE), no UUID: the dialplan falls back
    assert time.monotonic() - start < 1.0
    assert len(fastagi.pending) == 0


# --------------------------------------------------------------------- AudioSocket


async def test_idle_audiosocket_sockets_do_not_take_call_slots(
    start_bridge: BridgeFactory,
) -> None:
    cfg = make_config()
    cfg = dataclasses.replace(
        cfg,
        limits=dataclasses.replace(
            cfg.limits, max_calls=3, header_timeout_s=1.0, max_connections_per_source=20
        ),
    )
    bridge, _ = await start_bridge(cfg)
    port = bridge.audiosocket.port
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]
    try:
        await asyncio.sleep(0.1)
        assert bridge.audiosocket.active_calls == 0
        assert bridge.audiosocket.waiting_connections <= 3 + 20  # bounded
        caller = await registered_caller(bridge.fastagi.port, port)
        try:
            await until(lambda: any(caller.heard.pcm), 15, "the greeting")
            assert bridge.audiosocket.refused_calls == 0
        finally:
            await caller.close()
        # the idle ones are closed after header_timeout_s
        await until(lambda: bridge.audiosocket.waiting_connections == 0, 5, "idle sockets reaped")
        for reader, _ in idle:
            assert await asyncio.wait_for(reader.read(), 1) == b""
    finally:
        for _, writer in idle:
            writer.close()


async def test_stranger_cannot_reach_audiosocket(start_bridge: BridgeFactory) -> None:
    cfg = make_config()
    cfg = dataclasses.replace(
        cfg, asterisk=dataclasses.replace(cfg.asterisk, addresses=("127.0.0.1/32",))
    )
    bridge, events = await start_bridge(cfg)

    def stranger() -> bytes:
        with socket.socket() as sock:
            sock.bind(("127.0.0.2", 0))
            sock.settimeout(5)
            sock.connect(("127.0.0.1", bridge.audiosocket.port))
            sock.sendall(asock.uuid_frame(uuid.uuid4()) + asock.audio_frame(bytes(320)))
            try:
                return sock.recv(100)
            except ConnectionResetError:
                return b""

    assert await asyncio.to_thread(stranger) == b""
    await asyncio.sleep(0.1)
    assert not events.items and bridge.audiosocket.admission.refused == 1


def _refused_call(port: int) -> tuple[bytes, bytes]:
    """Play Asterisk on a call the bridge refuses: UUID and 10 frames sent at once, then
    read until the bridge's hangup frame, close our side as AudioSocket() does, read on.
    A TCP reset raises ConnectionResetError here."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(asock.uuid_frame(uuid.uuid4()) + asock.audio_frame(bytes(320)) * 10)
        first = b""
        while len(first) < 3:
            chunk = sock.recv(3 - len(first))
            if not chunk:
                break
            first += chunk
        sock.shutdown(socket.SHUT_WR)
        rest = sock.recv(100)
        return first, rest
    finally:
        sock.close()


async def test_call_over_max_calls_gets_a_hangup_frame_not_a_reset(
    start_bridge: BridgeFactory,
) -> None:
    cfg = make_config()
    cfg = dataclasses.replace(cfg, limits=dataclasses.replace(cfg.limits, max_calls=1))
    bridge, _ = await start_bridge(cfg)
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        await until(lambda: bridge.audiosocket.active_calls == 1, 10, "the first call")
        for _ in range(5):
            first, rest = await asyncio.to_thread(_refused_call, bridge.audiosocket.port)
            assert first == asock.hangup_frame() and rest == b""
        assert bridge.audiosocket.refused_calls == 5
    finally:
        await caller.close()


async def test_registered_call_still_works_through_fastagi(start_bridge: BridgeFactory) -> None:
    bridge, _ = await start_bridge()
    variables = await agi_request(bridge.fastagi.port)
    assert variables["AGI_BRIDGE_UUID"] in bridge.pending
