"""ARI client: REST over aiohttp and the events websocket of one Stasis application.

- REST: HTTP basic auth, a timeout on every request; any failure raises
  :class:`~agi_bridge.errors.AriError` naming method, path and status (never the password).
- Events: ``ws://HOST/ari/events?app=NAME&subscribeAll=false``: this application's
  channels only (``subscribeAll=true`` would deliver every event of the PBX). Connecting
  registers the application; Asterisk keeps channels that are in Stasis when the websocket
  drops, so the supervisor reconnects with capped exponential backoff and then calls
  ``on_reconnect`` so that the owner re-syncs what happened meanwhile (GET /channels).
- One websocket per application: when another one registers the same name (a second
  bridge with the same ``ari.app``), Asterisk sends this one ``ApplicationReplaced`` and
  its events go there. The client then stops, loudly (``replaced``, an ERROR line, a
  failing health check) instead of reconnecting: two bridges taking the application
  from each other would each lose the events of the other's live calls.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp

from agi_bridge.errors import AriError
from agi_bridge.protocol.ari import ApplicationReplaced, AriEvent, AriProtocolError, parse_event

log = logging.getLogger(__name__)

EventCallback = Callable[[AriEvent], None]
ReconnectCallback = Callable[[], Awaitable[None]]


class AriClient:
    """One ARI connection per process: shared REST session + one events websocket."""

    def __init__(
        self,
        url: str,
        app: str,
        username: str,
        password: str,
        *,
        on_event: EventCallback,
        on_reconnect: ReconnectCallback | None = None,
        request_timeout_s: float = 5.0,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        heartbeat_s: float = 10.0,
    ) -> None:
        parts = urlsplit(url.rstrip("/"))
        self.base_url = urlunsplit((parts.scheme, parts.netloc, parts.path + "/ari", "", ""))
        ws_scheme = "wss" if parts.scheme == "https" else "ws"
        self.events_url = urlunsplit(
            (
                ws_scheme,
                parts.netloc,
                parts.path + "/ari/events",
                f"app={quote(app)}&subscribeAll=false",
                "",
            )
        )
        self.app = app
        # The header is built here (aiohttp.BasicAuth is deprecated in recent releases);
        # it is never logged.
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}"}
        self._on_event = on_event
        self._on_reconnect = on_reconnect
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self.backoff_initial_s = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._heartbeat = heartbeat_s
        self._session: aiohttp.ClientSession | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.connected = asyncio.Event()
        self.connections = 0  # successful events-websocket connections so far
        self.replaced = False  # another websocket took the application (see the docstring)

    # ------------------------------------------------------------------ lifecycle

    async def start_rest(self) -> None:
        """Open the REST session only (no events websocket: no application registered)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)

    async def start(self) -> None:
        """Open the REST session and start the events supervisor (returns at once)."""
        await self.start_rest()
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name="ari-events")

    async def wait_connected(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self.connected.wait(), timeout_s)
        except TimeoutError as exc:
            raise AriError(f"ARI events websocket {self._safe_events_url} not connected") from exc

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.connected.clear()

    async def drop_events_connection(self) -> None:
        """Close the events websocket (the supervisor reconnects): operators and tests."""
        if self._ws is not None:
            await self._ws.close()

    @property
    def _safe_events_url(self) -> str:
        return self.events_url.split("?", 1)[0] + f"?app={self.app}"

    async def _supervise(self) -> None:
        delay = self.backoff_initial_s
        while True:
            try:
                await self._run_events()
                delay = self.backoff_initial_s  # it was up: start the backoff over
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("ARI events websocket %s: %s", self._safe_events_url, exc)
            self.connected.clear()
            if self.replaced:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff_max)

    async def _run_events(self) -> None:
        assert self._session is not None
        async with self._session.ws_connect(
            self.events_url, heartbeat=self._heartbeat, timeout=aiohttp.ClientWSTimeout(ws_close=2)
        ) as ws:
            self._ws = ws
            self.connections += 1
            log.info("ARI application %s registered (connection %d)", self.app, self.connections)
            self.connected.set()
            if self.connections > 1 and self._on_reconnect is not None:
                try:
                    await self._on_reconnect()
                except Exception:
                    log.exception("ARI re-sync after reconnect failed")
            try:
                async for message in ws:
                    if message.type is aiohttp.WSMsgType.TEXT:
                        self._dispatch(message.data)
                        if self.replaced:
                            await ws.close()
                            return
                    elif message.type is aiohttp.WSMsgType.ERROR:
                        raise aiohttp.ClientError(f"websocket error: {ws.exception()}")
            finally:
                self._ws = None
            log.warning("ARI events websocket closed (code %s)", ws.close_code)

    def _dispatch(self, text: str) -> None:
        try:
            event = parse_event(text)
        except AriProtocolError as exc:
            log.warning("ARI event ignored: %s", exc)
            return
        if isinstance(event, ApplicationReplaced):
            self.replaced = True
            log.error(
                "ARI application %s was taken over by another websocket (another bridge"
                " with the same ari.app?): this bridge stops listening for Stasis calls;"
                " give each bridge its own ari.app, then restart this one",
                self.app,
            )
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("ARI event handler failed on %s", type(event).__name__)

    # ------------------------------------------------------------------ REST

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
    ) -> Any:
        """One REST call; returns the decoded JSON body (None when empty)."""
        if self._session is None:
            raise AriError(f"ARI {method} {path}: client not started")
        url = self.base_url + path
        try:
            async with self._session.request(
                method, url, params=dict(params or {}), json=body
            ) as response:
                text = await response.text()
                log.debug("ARI %s %s -> %d", method, path, response.status)
                if response.status >= 400:
                    raise AriError(
                        f"ARI {method} {path}: {response.status} {response.reason}"
                        f"{': ' + _message(text) if text else ''}"
                    )
                if not text:
                    return None
                try:
                    return await response.json(content_type=None)
                except ValueError as exc:
                    raise AriError(f"ARI {method} {path}: reply is not JSON") from exc
        except TimeoutError as exc:
            raise AriError(f"ARI {method} {path}: timed out") from exc
        except aiohttp.ClientError as exc:
            raise AriError(f"ARI {method} {path}: {type(exc).__name__}: {exc}") from exc

    async def asterisk_info(self) -> Any:
        return await self.request("GET", "/asterisk/info")

    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{quote(channel_id)}/answer")

    async def create_bridge(self, bridge_id: str, name: str) -> None:
        await self.request(
            "POST", "/bridges", {"type": "mixing", "bridgeId": bridge_id, "name": name}
        )

    async def add_channels(self, bridge_id: str, *channel_ids: str) -> None:
        await self.request(
            "POST", f"/bridges/{quote(bridge_id)}/addChannel", {"channel": ",".join(channel_ids)}
        )

    async def delete_bridge(self, bridge_id: str) -> None:
        await self.request("DELETE", f"/bridges/{quote(bridge_id)}")

    async def hangup(self, channel_id: str) -> None:
        await self.request("DELETE", f"/channels/{quote(channel_id)}")

    async def external_media(self, params: Mapping[str, str]) -> Any:
        return await self.request("POST", "/channels/externalMedia", {"app": self.app, **params})

    async def send_dtmf(self, channel_id: str, digits: str, duration_ms: int) -> None:
        await self.request(
            "POST", f"/channels/{quote(channel_id)}/dtmf", {"dtmf": digits, "duration": duration_ms}
        )

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        await self.request(
            "POST", f"/channels/{quote(channel_id)}/variable", {"variable": name, "value": value}
        )

    async def continue_in_dialplan(
        self, channel_id: str, context: str = "", extension: str = "", priority: int = 0
    ) -> None:
        params: dict[str, str | int] = {}
        if context:
            params["context"] = context
        if extension:
            params["extension"] = extension
        if priority:
            params["priority"] = priority
        await self.request("POST", f"/channels/{quote(channel_id)}/continue", params)

    async def channel_ids(self) -> set[str]:
        return {str(c.get("id")) for c in await self.request("GET", "/channels") or []}

    async def bridges(self) -> list[dict[str, Any]]:
        return list(await self.request("GET", "/bridges") or [])


def _message(text: str) -> str:
    """ARI errors are ``{"message": "..."}``; keep the message, bounded."""
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(text).get("message", ""))[:200]
    return text[:200]
