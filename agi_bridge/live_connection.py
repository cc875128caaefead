"""The websocket connection to a GPT-Live endpoint: open, start, events, close with usage.

The I/O half that a GPT-Live provider needs (the protocol half is protocol/gpt_live.py):
connect to ``wss://api.openai.com/v1/live/sessions`` with no query and a Bearer key,
send ``session.start`` first and wait for ``session.started`` before anything else
(developers.openai.com/api/docs/guides/voice-websockets). Closing asks for
``session.close`` and waits, bounded, for ``session.closed``, which carries the final
cumulative usage ("close the session and collect its final usage":
guides/voice-latency-cost); a connection that drops without it has no confirmed usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from agi_bridge.errors import RealtimeError
from agi_bridge.protocol import gpt_live as gl

log = logging.getLogger(__name__)

LIVE_URL = "wss://api.openai.com" + gl.LIVE_PATH
CLOSE_TIMEOUT_S = 3.0


class LiveConnection:
    """A started GPT-Live session on one websocket."""

    def __init__(self, ws: ClientConnection, started: gl.SessionStarted) -> None:
        self._ws = ws
        self.session_id = started.session_id
        self.session = started.session
        self.usage_seconds = 0.0  # cumulative, from the last usage event seen
        self.closed: gl.SessionClosed | None = None

    async def send(self, event: dict[str, Any]) -> None:
        try:
            await self._ws.send(gl.encode(event))
        except websockets.ConnectionClosed as exc:
            raise RealtimeError(f"GPT-Live connection closed: {exc}") from exc

    async def events(self) -> AsyncIterator[gl.ServerEvent]:
        try:
            async for message in self._ws:
                event = gl.parse_server_event(message)
                if isinstance(event, gl.UsageUpdated):
                    self.usage_seconds = max(self.usage_seconds, event.seconds)
                elif isinstance(event, gl.SessionClosed):
                    self.usage_seconds = max(self.usage_seconds, event.seconds)
                    self.closed = event
                yield event
        except websockets.ConnectionClosedError as exc:
            raise RealtimeError(f"GPT-Live connection lost: {exc}") from exc

    async def close(self, timeout: float = CLOSE_TIMEOUT_S) -> float:
        """``session.close``, then wait (bounded) for ``session.closed``; returns the final
        cumulative usage in seconds (the last one seen when the server did not answer)."""
        if self.closed is None:
            with contextlib.suppress(RealtimeError, TimeoutError):
                await self.send(gl.session_close())
                async with asyncio.timeout(timeout):
                    async for event in self.events():
                        if isinstance(event, gl.SessionClosed):
                            break
        with contextlib.suppress(TimeoutError, websockets.ConnectionClosed, OSError):
            await asyncio.wait_for(self._ws.close(), timeout)
        return self.usage_seconds


async def open_live(
    url: str, api_key: str, start: gl.LiveSessionConfig, *, timeout: float = 10.0
) -> LiveConnection:
    """Connect, send ``session.start``, return once ``session.started`` arrived; raise
    RealtimeError on a refused handshake, an ``error`` before the start, or a timeout."""
    try:
        ws = await ws_connect(
            url,
            additional_headers={"Authorization": f"Bearer {api_key}"},
            open_timeout=timeout,
            compression=None,  # base64 audio does not compress
            max_size=16 * 2**20,
            max_queue=64,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=2,
        )
    except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
        raise RealtimeError(f"cannot connect to {url.split('?')[0]}: {exc}") from exc
    try:
        await ws.send(gl.encode(gl.session_start(start)))
        async with asyncio.timeout(timeout):
            async for message in ws:
                event = gl.parse_server_event(message)
                if isinstance(event, gl.SessionStarted):
                    return LiveConnection(ws, event)
                if isinstance(event, gl.ErrorEvent):
                    raise RealtimeError(
                        f"GPT-Live refused session.start: {event.code}: {event.message}"
                    )
        raise RealtimeError("GPT-Live closed the connection before session.started")
    except TimeoutError as exc:
        await ws.close()
        raise RealtimeError(f"no session.started within {timeout:g} s") from exc
    except (RealtimeError, websockets.ConnectionClosed) as exc:
        await ws.close()
        if isinstance(exc, RealtimeError):
            raise
        raise RealtimeError(f"GPT-Live connection closed during start: {exc}") from exc
