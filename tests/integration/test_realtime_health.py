"""/healthz tells when calls fail at Realtime (key rejected, service down), and recovers
after a call that works: real bridge, real sockets, the simulator refusing handshakes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import aiohttp

from agi_bridge.app import Bridge
from agi_bridge.simulator import Scenario, Simulator

from .conftest import BridgeFactory, Events, make_config
from .helpers import registered_caller, until


async def healthz(bridge: Bridge) -> tuple[int, dict[str, Any]]:
    assert bridge.monitoring.http is not None
    url = f"http://127.0.0.1:{bridge.monitoring.http.port}/healthz"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, json.loads(await response.text())


async def one_call(bridge: Bridge, events: Events, ended: int) -> None:
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        await until(lambda: len(events.of("end")) > ended, 20, "the call to end")
    finally:
        await caller.close()


async def test_healthz_reports_realtime_failures_and_recovers(
    simulator: Simulator, start_bridge: BridgeFactory
) -> None:
    cfg = make_config()
    cfg = dataclasses.replace(
        cfg, limits=dataclasses.replace(cfg.limits, unhealthy_after_realtime_failures=2)
    )
    bridge, events = await start_bridge(cfg)
    status, body = await healthz(bridge)
    assert status == 200 and body["checks"]["realtime"]["ok"] is True

    simulator.scenario = Scenario(api_key="sk-the-right-key")  # ours is rejected: 401
    await one_call(bridge, events, 0)
    assert events.of("end")[0]["reason"] == "realtime_failed"
    status, _ = await healthz(bridge)
    assert status == 200  # one failure is not an outage
    await one_call(bridge, events, 1)
    status, body = await healthz(bridge)
    assert status == 503 and body["status"] == "fail"
    assert body["failing"] == ["realtime"]
    check = body["checks"]["realtime"]
    assert check["consecutive_failures"] == 2 and check["last_failure"]
    assert "sk-the-right-key" not in json.dumps(body)

    simulator.scenario = Scenario(greeting="Hello again.")
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        await until(lambda: events.of("response_done"), 20, "a response")
    finally:
        await caller.close()
    status, body = await healthz(bridge)
    assert status == 200 and body["checks"]["realtime"]["consecutive_failures"] == 0
    await asyncio.sleep(0)
