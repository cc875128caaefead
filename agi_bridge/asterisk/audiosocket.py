"""The AudioSocket TCP server: one ``Call`` per connection from Asterisk.

Thin: it accepts connections, enforces the concurrent-call limit and hands each stream to
a factory that builds and runs the call. The call itself owns the connection from then on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

from agi_bridge.protocol import audiosocket as asock

log = logging.getLogger(__name__)

CallRunner = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class AudioSocketServer:
    def __init__(self, run_call: CallRunner, host: str, port: int, *, max_calls: int) -> None:
        self._run_call = run_call
        self._host = host
        self._port = port
        self.max_calls = max_calls
        self._server: asyncio.Server | None = None
        self._active: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def serving(self) -> bool:
        """True while the listening socket accepts connections."""
        return self._server is not None and self._server.is_serving()

    @property
    def active_calls(self) -> int:
        return len(self._active)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self._host, self._port, reuse_address=True, limit=65536
        )
        log.info("AudioSocket listening on %s:%d", self._host, self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # 20 ms frames must leave at once, not wait for Nagle to batch them
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if len(self._active) >= self.max_calls:
            log.warning("refusing AudioSocket connection: %d calls active", len(self._active))
            writer.write(asock.hangup_frame())  # the dialplan continues to its fallback
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._active.add(task)
        try:
            await self._run_call(reader, writer)
        finally:
            self._active.discard(task)

    async def close(self, grace: float = 5.0) -> None:
        """Stop listening, then give live calls ``grace`` seconds before cancelling them."""
        if self._server is not None:
            self._server.close()
        if self._active:
            _, pending = await asyncio.wait(set(self._active), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=grace)
        if self._server is not None:
            await self._server.wait_closed()
