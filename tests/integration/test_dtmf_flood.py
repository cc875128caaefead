"""A flood of caller DTMF (20,000 frames at once) costs neither the other calls nor the
model: rate-limited per call, one message per burst. Real sockets, simulator."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agi_bridge.protocol import audiosocket as asock
from agi_bridge.simulator import Simulator

from .conftest import BridgeFactory, make_config
from .helpers import registered_caller, until


async def test_dtmf_flood_is_rate_limited_and_coalesced(
    simulator: Simulator, start_bridge: BridgeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    bridge, events = await start_bridge(make_config(greeting=""))
    victim = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    flooder = await registered_caller(
        bridge.fastagi.port, bridge.audiosocket.port, channel="PJSIP/mallory-00000002"
    )
    try:
        await until(lambda: len(simulator.sessions) == 2, 10, "two sessions")
        await asyncio.sleep(0.5)
        mark = len(victim.heard.times)
        assert flooder._writer is not None
        flooder._writer.write(asock.dtmf_frame("5") * 20_000)
        await asyncio.sleep(2.0)
        # the other call's audio kept its 20 ms pace through the flood
        intervals = victim.heard.intervals_ms()[mark:]
        assert len(intervals) > 60 and max(intervals) < 250, max(intervals)
    finally:
        await victim.close()
        await flooder.close()
    flood_id = str(flooder.uuid)
    digits = events.of("caller_dtmf", flood_id)
    assert 20 <= len(digits) <= 60  # the burst, then ~10 a second
    session = next(
        s for s in simulator.sessions if any("[caller pressed" in str(e) for e in s.received)
    )
    pressed = [
        e
        for e in session.received
        if e["type"] == "conversation.item.create" and "[caller pressed" in str(e)
    ]
    assert 1 <= len(pressed) <= 6  # one per burst of up to 32 digits
    dtmf_lines = [
        r for r in caplog.records if "DTMF" in r.getMessage() or "pressed" in r.getMessage()
    ]
    assert len(dtmf_lines) <= 80
