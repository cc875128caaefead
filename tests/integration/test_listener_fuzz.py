"""A bounded fuzz of the three listeners of a running bridge (FastAGI, AudioSocket, HTTP),
over real loopback sockets: mutated and random inputs from a fixed seed, a fixed number of
connections, each bounded in time. Afterwards the bridge must still serve a real call and
/healthz, hold nothing it should have let go, and have logged no internal error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import uuid

import pytest

from agi_bridge.app import Bridge
from agi_bridge.protocol import audiosocket as asock

from .conftest import BridgeFactory
from .helpers import registered_caller, until
from .test_fastagi_server import env_block

SEED = 12
CONNECTIONS = 150  # per listener
PER_CONNECTION_S = 1.0


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One random mutation of *data* (bytes flipped, cut, repeated, inserted, replaced)."""
    choice = rng.randrange(7)
    if not data:
        return rng.randbytes(rng.randrange(1, 64))
    if choice == 0:
        return data[: rng.randrange(len(data))]
    if choice == 1:
        out = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)
    if choice == 2:
        at = rng.randrange(len(data))
        return data[:at] + rng.randbytes(rng.randrange(1, 200)) + data[at:]
    if choice == 3:
        at = rng.randrange(len(data))
        return data[:at] + data[at:] * rng.randrange(2, 50)
    if choice == 4:
        return rng.randbytes(rng.randrange(1, 4096))
    if choice == 5:
        return data.replace(b"\n", rng.choice([b"\r\n", b"\r", b"", b"\n\n", b"\x00"]))
    return data + b"x" * rng.randrange(1, 40_000)


async def poke(port: int, payload: bytes, *, read: bool = True) -> None:
    """Connect, send, read what comes within the bound, close. Any outcome is fine."""
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(PER_CONNECTION_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(payload)
                await writer.drain()
                if read:
                    while await reader.read(65536):
                        pass
            finally:
                writer.close()


def agi_inputs(rng: random.Random) -> list[bytes]:
    valid = env_block("agent", ["default"])
    out = []
    for _ in range(CONNECTIONS):
        data = valid
        for _ in range(rng.randrange(1, 4)):
            data = mutate(rng, data)
        if rng.random() < 0.3:  # then replies, some of them garbage
            data += b"200 result=1\n" * rng.randrange(3) + mutate(rng, b"200 result=1 (x)\n")
        out.append(data)
    return out


def audiosocket_inputs(rng: random.Random) -> list[bytes]:
    out = []
    for _ in range(CONNECTIONS):
        frames = [asock.uuid_frame(uuid.uuid4())]
        for _ in range(rng.randrange(0, 30)):
            kind = rng.choice([0x00, 0x01, 0x03, 0x10, 0x11, 0x16, 0x20, 0xFF, rng.randrange(256)])
            length = rng.choice([0, 1, 16, 320, 321, 640, 8192, 8193, 65535, rng.randrange(400)])
            body = rng.randbytes(min(length, rng.choice([length, length // 2, 5])))
            frames.append(struct.pack(">BH", kind, length) + body)
        data = b"".join(frames)
        if rng.random() < 0.5:
            data = mutate(rng, data)
        out.append(data)
    return out


def http_inputs(rng: random.Random, port: int) -> list[bytes]:
    paths = ["/healthz", "/metrics", "/admin/calls", "/admin/calls/x/hangup", "/", "/%00"]
    methods = ["GET", "POST", "PUT", "DELETE", "OPTIONS", "BREW", "G\x00T"]
    out = []
    for _ in range(CONNECTIONS):
        request = (
            f"{rng.choice(methods)} {rng.choice(paths)} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nContent-Length: 5\r\n\r\nhello"
        ).encode("latin-1")
        out.append(mutate(rng, request) if rng.random() < 0.8 else request)
    return out


async def fuzz(port: int, inputs: list[bytes]) -> None:
    for i in range(0, len(inputs), 25):  # 25 at a time
        await asyncio.gather(*(poke(port, data) for data in inputs[i : i + 25]))


def internal_errors(records: list[logging.LogRecord]) -> list[str]:
    """Log lines that mean a bug: ERROR or worse from our code or asyncio, or a traceback
    from anything but the expected 'call ended' paths."""
    bad = []
    for r in records:
        ours = r.name.startswith(("agi_bridge", "asyncio", "aiohttp"))
        if ours and (r.levelno >= logging.ERROR or "unexpected" in r.getMessage()):
            bad.append(f"{r.name}: {r.getMessage()}")
    return bad


async def healthz_ok(bridge: Bridge) -> bool:
    assert bridge.monitoring.http is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.monitoring.http.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    return data.startswith(b"HTTP/1.1 200")


async def test_fuzz_all_listeners(
    start_bridge: BridgeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    bridge, _ = await start_bridge()
    rng = random.Random(SEED)
    assert bridge.monitoring.http is not None
    async with asyncio.timeout(120):  # the whole fuzz is bounded in time, too
        await fuzz(bridge.fastagi.port, agi_inputs(rng))
        await fuzz(bridge.audiosocket.port, audiosocket_inputs(rng))
        await fuzz(bridge.monitoring.http.port, http_inputs(rng, bridge.monitoring.http.port))

        # nothing is left holding a slot
        await until(lambda: not bridge.calls, 20, "fuzzed calls to end")
        await until(lambda: bridge.audiosocket.waiting_connections == 0, 10, "gates to empty")
        await until(lambda: len(bridge.fastagi.admission) == 0, 10, "FastAGI to empty")
        assert len(bridge.pending) <= bridge.pending.max_pending

        # and a real call and /healthz still work
        assert await healthz_ok(bridge)
        caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
        try:
            await until(lambda: any(caller.heard.pcm), 15, "the greeting")
        finally:
            await caller.close()
    assert internal_errors(caplog.records) == []
