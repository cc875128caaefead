"""A thin Realtime client for the simulator tests (real websockets, no mocks)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
from typing import Any

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection, connect

from agi_bridge.audio import slin_to_ulaw
from agi_bridge.simulator import Scenario

AUTH = {"Authorization": "Bearer sk-test"}
PCMU_SESSION: dict[str, Any] = {
    "type": "realtime",
    "audio": {
        "input": {"format": {"type": "audio/pcmu"}},
        "output": {"format": {"type": "audio/pcmu"}},
    },
}


def fast(**kwargs: Any) -> Scenario:
    """A scenario that streams without pacing or latency, for quick tests."""
    return Scenario(**({"speed": math.inf, "response_latency_ms": 0} | kwargs))


class Client:
    """Sends client events; reads server events, keeping every one it saw in ``seen``."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, kind: str, **fields: Any) -> None:
        await self.ws.send(json.dumps({"type": kind, **fields}))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        message = await asyncio.wait_for(self.ws.recv(), timeout)
        event: dict[str, Any] = json.loads(message)
        self.seen.append(event)
        return event

    async def expect(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """Read until an event of type ``kind`` (others are kept in ``seen``)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.recv(timeout)
                if event["type"] == kind:
                    return event

    def find(self, kind: str) -> dict[str, Any]:
        """The first event of type ``kind`` already seen."""
        return next(e for e in self.seen if e["type"] == kind)

    async def until(self, kind: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Every event up to and including the next ``kind``."""
        start = len(self.seen)
        await self.expect(kind, timeout)
        return self.seen[start:]

    async def update(self, session: dict[str, Any]) -> dict[str, Any]:
        await self.send("session.update", session=session)
        return await self.expect("session.updated")

    async def append_ulaw(self, ulaw: bytes, chunk: int = 160) -> None:
        for i in range(0, len(ulaw), chunk):
            piece = base64.b64encode(ulaw[i : i + chunk]).decode()
            await self.send("input_audio_buffer.append", audio=piece)


OPENED: list[Client] = []  # closed after each test by the autouse fixture in conftest


async def open_client(url: str, headers: dict[str, str] | None = None) -> Client:
    # max_queue=None: a test that stops reading must not stall the close handshake behind a
    # full receive buffer (a real bridge reads continuously).
    ws = await connect(url, additional_headers=AUTH if headers is None else headers, max_queue=None)
    client = Client(ws)
    OPENED.append(client)
    await client.expect("session.created")
    return client


def voiced(ms: int, rate: int = 8000, f0: float = 140.0) -> npt.NDArray[np.int16]:
    """A speech-like test signal made here, independently of the simulator's voice:
    harmonics of ``f0`` under a 4 Hz syllable envelope, about -20 dBFS RMS."""
    t = np.arange(ms * rate // 1000) / rate
    wave = np.zeros_like(t)
    for k in range(1, 20):
        if k * f0 < 3400:
            wave += np.sin(2 * math.pi * k * f0 * t) / k
    signal = wave * (0.35 + 0.65 * np.abs(np.sin(2 * math.pi * 2.0 * t)))
    scaled: npt.NDArray[np.float64] = signal / np.abs(signal).max() * 0.3 * 32767
    return scaled.astype(np.int16)


def silence(ms: int, rate: int = 8000) -> npt.NDArray[np.int16]:
    return np.zeros(ms * rate // 1000, dtype=np.int16)


def ulaw(*parts: npt.NDArray[np.int16]) -> bytes:
    return slin_to_ulaw(np.concatenate(parts).astype("<i2").tobytes())
