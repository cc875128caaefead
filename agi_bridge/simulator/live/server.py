"""The GPT-Live websocket endpoint: ``/v1/live/sessions`` with no query, Bearer auth.

"Connect to wss://api.openai.com/v1/live/sessions with no query parameters. Authenticate
with Authorization: Bearer" (developers.openai.com/api/docs/guides/voice-websockets): any
other path or a query gets HTTP 400/404 here, a missing key 401.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from agi_bridge.protocol.gpt_live import LIVE_PATH
from agi_bridge.simulator.live.session import LiveSession
from agi_bridge.simulator.scenario import Scenario

log = logging.getLogger("agi_bridge.simulator.live")

T = TypeVar("T")
MAX_MESSAGE_BYTES = 21 * 1024 * 1024


class LiveSimulator:
    """A local GPT-Live endpoint. ``port=0`` picks a free port; read ``url``."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_sessions: int = 100,
    ):
        self.scenario = scenario or Scenario()
        self.host = host
        self.port = port
        self.max_sessions = max_sessions
        self.sessions: list[LiveSession] = []
        self.refused: list[int] = []  # HTTP statuses of refused handshakes
        self._server: Server | None = None
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{LIVE_PATH}"

    async def __aenter__(self) -> LiveSimulator:
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._check_handshake,
            max_size=MAX_MESSAGE_BYTES,
            max_queue=16,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("GPT-Live simulator listening on %s", self.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Wait until ``predicate()`` is truthy (re-checked on every event); TimeoutError."""
        async with asyncio.timeout(timeout):
            while not (value := predicate()):
                await self._changed.wait()
        return value

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _refuse(self, connection: ServerConnection, status: int, message: str) -> Response:
        self.refused.append(status)
        body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
        response = connection.respond(status, json.dumps(body) + "\n")
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if path != LIVE_PATH:
            return self._refuse(connection, 404, f"No GPT-Live endpoint at {path}.")
        if query:
            return self._refuse(connection, 400, "Connect without query parameters.")
        auth = request.headers.get("Authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not key:
            return self._refuse(connection, 401, "You didn't provide an API key.")
        if self.scenario.api_key is not None and key != self.scenario.api_key:
            return self._refuse(connection, 401, "Incorrect API key provided.")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        session = LiveSession(ws, self.scenario, self._notify)
        self.sessions.append(session)
        finished = [s for s in self.sessions if s.closed]
        for old in finished[: max(0, len(self.sessions) - self.max_sessions)]:
            self.sessions.remove(old)
        self._notify()
        await session.run()
