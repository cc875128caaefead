"""The websocket connection to a Realtime endpoint: OpenAI, Azure, or any compatible URL.

Thin over ``websockets``: it sends client events and yields parsed server events. The
endpoint (URL + auth header) is built from the config; the bridge never knows whether the
other end is the real service or the bundled simulator.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from agi_bridge.config import Realtime as RealtimeConfig
from agi_bridge.errors import ConfigError, RealtimeError
from agi_bridge.protocol import realtime as rt

log = logging.getLogger(__name__)

OPENAI_URL = "wss://api.openai.com/v1/realtime"


@dataclass(frozen=True)
class Endpoint:
    """Where to connect and how to authenticate. ``repr`` hides the headers (secrets)."""

    url: str
    headers: dict[str, str] = field(repr=False, default_factory=dict)


def endpoint_for(cfg: RealtimeConfig, model: str, *, api_key: str | None = None) -> Endpoint:
    """Build the endpoint for ``model`` from the config; the key comes from the environment."""
    key = api_key if api_key is not None else os.environ.get(cfg.api_key_env, "")
    if cfg.provider == "openai":
        url = f"{cfg.url or OPENAI_URL}?model={quote(model)}"
        return Endpoint(url, {"Authorization": f"Bearer {key}"})
    if cfg.provider == "azure":
        if not cfg.url:
            raise ConfigError("azure needs realtime.url (wss://RESOURCE.openai.azure.com)")
        base = cfg.url.rstrip("/")
        if "/openai/" not in base:
            base += "/openai/v1/realtime"
        return Endpoint(f"{base}?model={quote(model)}", {"api-key": key})
    if cfg.provider == "url":
        if not cfg.url:
            raise ConfigError("provider 'url' needs realtime.url")
        sep = "&" if "?" in cfg.url else "?"
        url = cfg.url if "model=" in cfg.url else f"{cfg.url}{sep}model={quote(model)}"
        return Endpoint(url, {"Authorization": f"Bearer {key}"})
    raise ConfigError(f"provider {cfg.provider!r} has no endpoint of its own")


class RealtimeSession(Protocol):
    """What a Call needs from a Realtime connection (a test may pass its own)."""

    async def send(self, event: dict[str, Any]) -> None: ...

    def events(self) -> AsyncIterator[rt.ServerEvent]: ...

    async def close(self) -> None: ...


Connector = Callable[[str], Awaitable[RealtimeSession]]


class WebsocketSession:
    """A live Realtime websocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    async def send(self, event: dict[str, Any]) -> None:
        try:
            await self._ws.send(rt.encode(event))
        except websockets.ConnectionClosed as exc:
            raise RealtimeError(f"Realtime connection closed: {_close_reason(exc)}") from exc

    async def events(self) -> AsyncIterator[rt.ServerEvent]:
        try:
            async for message in self._ws:
                yield rt.parse_server_event(message)
        except websockets.ConnectionClosedError as exc:
            raise RealtimeError(f"Realtime connection lost: {_close_reason(exc)}") from exc
        # a clean close by the server ends the iteration; the Call decides what that means

    async def close(self) -> None:
        await self._ws.close()


def _close_reason(exc: websockets.ConnectionClosed) -> str:
    rcvd = exc.rcvd
    if rcvd is None:
        return "no close frame"
    return f"code {rcvd.code} {rcvd.reason!r}".strip()


async def connect(endpoint: Endpoint, *, timeout: float = 10.0) -> WebsocketSession:
    """Open a Realtime websocket or raise RealtimeError (never hangs past ``timeout``)."""
    try:
        ws = await ws_connect(
            endpoint.url,
            additional_headers=endpoint.headers,
            open_timeout=timeout,
            # audio deltas are base64 (incompressible); deflate would only cost CPU per call
            compression=None,
            max_size=16 * 2**20,
            max_queue=64,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=2,
        )
    except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
        raise RealtimeError(f"cannot connect to {_redact(endpoint.url)}: {exc}") from exc
    return WebsocketSession(ws)


def connector(cfg: RealtimeConfig, *, url: str | None = None) -> Connector:
    """A function that opens a session for a model, from the config (or a fixed URL)."""

    async def open_session(model: str) -> RealtimeSession:
        if url is not None:
            key = os.environ.get(cfg.api_key_env) or "sk-local-simulator"
            ep = Endpoint(
                f"{url.split('?')[0]}?model={quote(model)}", {"Authorization": f"Bearer {key}"}
            )
        else:
            ep = endpoint_for(cfg, model)
        return await connect(ep, timeout=cfg.connect_timeout_s)

    return open_session


def _redact(url: str) -> str:
    # URLs carry no secrets here (keys travel in headers), but strip query strings anyway
    return url.split("?")[0]
