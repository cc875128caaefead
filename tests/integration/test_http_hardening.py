"""The HTTP listener (/healthz, /metrics, /admin) under idle floods and malformed input,
over real sockets: bounded connections, idle ones closed, one log line per bad request."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import pytest
from aiohttp import ClientSession, ClientTimeout

from tests.integration.conftest import BridgeFactory, make_config


def _config(max_connections: int = 50, idle_timeout: float = 1.0):  # type: ignore[no-untyped-def]
    cfg = make_config()
    return dataclasses.replace(
        cfg,
        limits=dataclasses.replace(
            cfg.limits, max_http_connections=max_connections, http_idle_timeout_s=idle_timeout
        ),
    )


async def _healthz(port: int) -> int:
    async with (
        ClientSession(timeout=ClientTimeout(total=5)) as http,
        http.get(f"http://127.0.0.1:{port}/healthz") as r,
    ):
        return r.status


async def test_idle_connections_are_bounded_and_healthz_answers(
    start_bridge: BridgeFactory,
) -> None:
    bridge, _ = await start_bridge(_config(max_connections=50, idle_timeout=30.0))
    http = bridge.monitoring.http
    assert http is not None
    idle = []
    try:
        for _ in range(10):
            idle += await asyncio.gather(
                *(asyncio.open_connection("127.0.0.1", http.port) for _ in range(100))
            )
        await asyncio.sleep(0.2)
        assert http.connections <= 50  # 1,000 idle sockets, at most 50 held open
        assert await _healthz(http.port) == 200
        assert http.connections <= 50
    finally:
        for _, writer in idle:
            writer.close()


async def test_a_silent_connection_is_closed(start_bridge: BridgeFactory) -> None:
    bridge, _ = await start_bridge(_config(idle_timeout=1.0))
    assert bridge.monitoring.http is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.monitoring.http.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never the blank line
        start = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert time.monotonic() - start < 5.0
    finally:
        writer.close()


async def test_malformed_requests_log_one_line_each_at_most(
    start_bridge: BridgeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bridge, _ = await start_bridge(_config())
    assert bridge.monitoring.http is not None
    port = bridge.monitoring.http.port
    bad = [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\n\r\n",
        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(40),  # a TLS hello
    ]
    for _ in range(20):
        for data in bad:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(data)
            await asyncio.wait_for(reader.read(), 5)
            writer.close()
    assert await _healthz(port) == 200
    records = [r for r in caplog.records if r.name.startswith(("aiohttp", "agi_bridge.http"))]
    records += [r for r in caplog.records if "malformed" in r.getMessage()]
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text
    assert len([r for r in caplog.records if "malformed request" in r.getMessage()]) <= 5
