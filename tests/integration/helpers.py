"""Shared pieces of the agent/tool/admin integration tests: Asterisk's FastAGI side, a
fake AMI for the Call, a local webhook server."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agi_bridge.config import Config, load_text
from agi_bridge.errors import AmiError
from agi_bridge.virtual_caller import VirtualCaller

HEADER = """
listen:
  {audiosocket: "127.0.0.1:0", fastagi: "127.0.0.1:0", http: "127.0.0.1:0",
   audiosocket_unregistered: default_agent}  # virtual callers without FastAGI
ami: {enabled: false}
records: {enabled: false}
realtime: {provider: url, url: "ws://unused", connect_timeout_s: 3}
limits: {hangup_drain_timeout_s: 10, transfer_close_timeout_s: 3}
"""


def config(body: str) -> Config:
    """A test config: real sockets on free ports, no AMI of its own, plus *body*."""
    return load_text(HEADER + body, "test.yaml")


async def until(pred: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or pred}")
        await asyncio.sleep(0.02)


async def agi_request(
    port: int,
    *,
    dnid: str = "100",
    extension: str = "100",
    context: str = "agents",
    args: tuple[str, ...] = (),
    callerid: str = "5551234",
    channel: str = "PJSIP/alice-00000001",
) -> dict[str, str]:
    """Asterisk's side of ``AGI(agi://HOST/agent,ARGS)``: the channel variables set."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [
        "agi_network: yes",
        "agi_network_script: agent",
        "agi_request: agi://127.0.0.1/agent",
        f"agi_channel: {channel}",
        "agi_language: en",
        "agi_type: PJSIP",
        "agi_uniqueid: 1700000000.7",
        "agi_version: 22.10.1",
        f"agi_callerid: {callerid}",
        "agi_calleridname: Alice",
        f"agi_dnid: {dnid}",
        "agi_rdnis: unknown",
        f"agi_context: {context}",
        f"agi_extension: {extension}",
        "agi_priority: 2",
        "agi_enhanced: 0.0",
        "agi_accountcode: ",
        *(f"agi_arg_{i}: {a}" for i, a in enumerate(args, 1)),
    ]
    writer.write(("\n".join(lines) + "\n\n").encode())
    variables: dict[str, str] = {}
    try:
        while line := await asyncio.wait_for(reader.readline(), 5):
            words = line.decode().strip().split(" ", 3)
            if words[:2] == ["SET", "VARIABLE"]:
                variables[words[2]] = words[3].strip('"')
            writer.write(b"200 result=1\n")
    finally:
        writer.close()
    return variables


async def registered_caller(
    bridge_fastagi_port: int, audiosocket_port: int, **agi: Any
) -> VirtualCaller:
    """FastAGI registration, then the AudioSocket connection with that UUID (connected),
    at the address the answer told (as the shipped dialplan does: with several workers
    it is the registering worker's port), else at ``audiosocket_port``."""
    variables = await agi_request(bridge_fastagi_port, **agi)
    told = variables.get("AGI_BRIDGE_AUDIOSOCKET", "")
    port = int(told.rpartition(":")[2]) if told else audiosocket_port
    caller = VirtualCaller("127.0.0.1", port, call_uuid=uuid.UUID(variables["AGI_BRIDGE_UUID"]))
    await caller.connect()
    return caller


class FakeCallAmi:
    """The AMI actions a Call uses, recorded; ``on_redirect`` plays Asterisk."""

    def __init__(self) -> None:
        self.connected = True
        self.actions: list[tuple[str, tuple[Any, ...]]] = []
        self.redirected_at: float | None = None
        self.fail_redirect: str | None = None
        self.on_redirect: Callable[[], None] | None = None

    async def play_dtmf(self, channel: str, digit: str, duration_ms: int) -> None:
        self.actions.append(("PlayDTMF", (channel, digit, duration_ms)))

    async def setvar(self, channel: str, variable: str, value: str) -> None:
        self.actions.append(("Setvar", (channel, variable, value)))

    async def redirect(self, channel: str, context: str, exten: str, priority: int = 1) -> None:
        self.actions.append(("Redirect", (channel, context, exten, priority)))
        if self.fail_redirect:
            raise AmiError(f"AMI Redirect failed: {self.fail_redirect}")
        self.redirected_at = time.monotonic()
        if self.on_redirect is not None:
            self.on_redirect()

    def names(self) -> list[str]:
        return [name for name, _ in self.actions]


def close_like_asterisk(caller: VirtualCaller) -> None:
    """What Asterisk does after a Redirect: stop sending and close its side of the socket.

    Only the write side is shut (the caller keeps reading), so a hangup frame the bridge
    might still send would be seen by the test.
    """
    caller._tasks[0].cancel()  # the 20 ms send loop
    assert caller._writer is not None
    caller._writer.write_eof()


class WebhookServer:
    """A local HTTP service for webhook tools; records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.app = web.Application()
        self.routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}
        self.app.router.add_route("*", "/{name}", self._handle)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        body = await request.read()
        self.requests.append(
            {
                "name": name,
                "method": request.method,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "json": json.loads(body) if body else None,
                "at": time.monotonic(),
            }
        )
        handler = self.routes.get(name)
        if handler is None:
            return web.json_response({"error": "not found"}, status=404)
        return await handler(request)
