"""The websocket server: handshake rules of the real endpoint, one SimSession per socket.

The handshake is checked before the upgrade, as the service does: an ``OpenAI-Beta``
header gets HTTP 400 (the beta is retired), a missing key 401, and a scenario can make the
endpoint fail with 500/503 to exercise the bridge's connect errors and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from agi_bridge.simulator.item_events import Limits
from agi_bridge.simulator.scenario import Scenario, demo_scenario
from agi_bridge.simulator.session import SimSession

log = logging.getLogger("agi_bridge.simulator")

T = TypeVar("T")
MAX_MESSAGE_BYTES = 21 * 1024 * 1024  # a 15 MiB append is ~20 MiB of base64 + JSON


class Simulator:
    """A local Realtime (GA) endpoint. ``port=0`` picks a free port; read ``url``."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_records: int = 10_000,
        keep_caller_audio_ms: int = 60_000,
        max_sessions: int = 100,
    ):
        self._scenario = scenario or Scenario()
        self.host = host
        self.port = port
        self.limits = Limits(max_records=max_records, keep_caller_audio_ms=keep_caller_audio_ms)
        self.max_sessions = max_sessions
        self.sessions: list[SimSession] = []
        self.handshakes = 0  # every opening handshake, refused or not
        self.refused = 0
        self._server: Server | None = None
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ control

    @property
    def scenario(self) -> Scenario:
        return self._scenario

    @scenario.setter
    def scenario(self, scenario: Scenario) -> None:
        """Applies to sessions opened from now on; restarts the refuse_connect count."""
        self._scenario = scenario
        self.refused = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/v1/realtime?model=gpt-realtime"

    async def start(self) -> None:
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._check_handshake,
            max_size=MAX_MESSAGE_BYTES,
            max_queue=16,  # bounded receive buffer, in frames
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("Realtime simulator listening on %s", self.url)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()  # closes every connection with 1001 (going away)
            await self._server.wait_closed()
            self._server = None

    async def serve_forever(self) -> None:
        assert self._server is not None, "call start() first"
        await self._server.serve_forever()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -------------------------------------------------------------- observation

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Wait until ``predicate()`` is truthy (re-checked on every event in or out);
        return its value. Raises ``TimeoutError``."""
        async with asyncio.timeout(timeout):
            while not (value := predicate()):
                await self._changed.wait()
        return value

    def _notify(self) -> None:
        # Wake every waiter once; the next wait uses a fresh event.
        self._changed.set()
        self._changed = asyncio.Event()

    # ---------------------------------------------------------------- websocket

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        sc = self._scenario
        if sc.refuse_connect is not None and (
            sc.refuse_connect_times == 0 or self.refused < sc.refuse_connect_times
        ):
            self.refused += 1
            message = (
                "The server is overloaded or not ready yet."
                if sc.refuse_connect == 503
                else ("The server had an error while processing your request.")
            )
            return _json_response(connection, sc.refuse_connect, message, "server_error", None)
        headers = request.headers
        if "OpenAI-Beta" in headers:
            return _json_response(
                connection,
                400,
                "The Realtime API beta is no longer available; remove the 'OpenAI-Beta' header "
                "to use the GA interface.",
                "invalid_request_error",
                "beta_api_not_supported",
            )
        key = _api_key(headers)
        if not key:
            return _json_response(
                connection,
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "invalid_request_error",
                None,
            )
        if sc.api_key is not None and key != sc.api_key:
            hint = key[:3] + "*" * 4 + key[-4:] if len(key) > 8 else "****"
            return _json_response(
                connection,
                401,
                f"Incorrect API key provided: {hint}.",
                "invalid_request_error",
                "invalid_api_key",
            )
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        session = SimSession(ws, self._scenario, self.limits, self._notify)
        self.sessions.append(session)
        if len(self.sessions) > self.max_sessions:  # forget the oldest finished sessions
            finished = [s for s in self.sessions if s.closed][
                : len(self.sessions) - self.max_sessions
            ]
            for old in finished:
                self.sessions.remove(old)
        log.info("%s opened on %s", session.id, session.path)
        self._notify()
        await session.run()


def _api_key(headers: Headers) -> str:
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("api-key", "").strip()


def _json_response(
    connection: ServerConnection, status: int, message: str, kind: str, code: str | None
) -> Response:
    body: dict[str, Any] = {
        "error": {"message": message, "type": kind, "param": None, "code": code}
    }
    response = connection.respond(status, json.dumps(body) + "\n")
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


async def run_simulator(
    host: str,
    port: int,
    scenario: Scenario | None,
    *,
    on_ready: Callable[[str], None] | None = None,
    stop_on_signals: bool = False,
) -> None:
    """Serve until cancelled (the CLI's ``agi-bridge simulate``); ``None`` = the demo script.

    ``stop_on_signals``: also stop, cleanly, on SIGTERM or SIGINT. The CLI sets it: as a
    container's PID 1 the process gets no default action for SIGTERM (the kernel drops
    signals PID 1 has no handler for), so without a handler `docker stop` waits its full
    grace period and then kills it.
    """
    async with Simulator(scenario or demo_scenario(), host, port) as sim:
        if on_ready is not None:
            on_ready(sim.url)
        if not stop_on_signals:
            await sim.serve_forever()
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            serving = asyncio.create_task(sim.serve_forever())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (serving, stopping):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if stop.is_set():
                log.info("simulator: signal received, stopping")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
