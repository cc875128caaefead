"""A real call through the bridge: freed heap goes back to the OS while it runs and once
it has ended (agi_bridge/heap_return.py), without a gap in the caller's 20 ms frames."""

from __future__ import annotations

import asyncio

from .conftest import BridgeFactory
from .helpers import registered_caller, until


async def test_the_bridge_trims_during_and_after_its_calls(start_bridge: BridgeFactory) -> None:
    bridge, events = await start_bridge()
    assert bridge.heap.enabled  # glibc here
    bridge.heap.every_s = 0.3
    bridge.heap.settle_s = 0.2
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        await until(lambda: any(caller.heard.pcm), 15, "the greeting")
        start = bridge.heap.trims
        await until(lambda: bridge.heap.trims >= start + 2, 5, "trims while the call is up")
        # the frames went on meanwhile (generous: a trim blocks the loop for about 1 ms)
        assert max(caller.heard.intervals_ms()[-50:]) < 200
        during = bridge.heap.trims
        caller.hangup()
        await until(lambda: not bridge.calls, 10, "the call's end")
    finally:
        await caller.close()
    await until(lambda: bridge.heap.trims > during, 5, "the trim after the last call")
    after = bridge.heap.trims
    await asyncio.sleep(1.0)
    assert bridge.heap.trims == after  # idle: no timer runs
    assert events.of("end")
