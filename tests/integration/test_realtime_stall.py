"""A Realtime session that stalls (open, but silent) is noticed within stall_timeout_s
and resumed, answering at once: the caller hears silence for ~5 s at most, not until the
call times out. Real sockets; the simulator's stall fault."""

from __future__ import annotations

import itertools

from agi_bridge.simulator import Scenario, Simulator

from .conftest import BridgeFactory
from .helpers import registered_caller, until
from .test_call_flow import voiced_frames

GREETING = "Hello, thanks for calling, let me tell you all about our opening hours today."


async def test_stalled_session_is_resumed_within_seconds(
    simulator: Simulator, start_bridge: BridgeFactory
) -> None:
    simulator.scenario = Scenario(greeting=GREETING, stall_after_ms=700)
    bridge, events = await start_bridge()
    assert bridge.config.realtime.stall_timeout_s == 4.0  # the default
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        await until(lambda: simulator.sessions, 10, "the first session")
        simulator.scenario = Scenario(default_reply="Sorry, where were we?")  # no more stalls
        await until(lambda: voiced_frames(caller.heard.pcm), 10, "the greeting")
        await until(lambda: simulator.sessions[0].stalled, 5, "the stall")
        await until(lambda: len(simulator.sessions) == 2, 10, "a resumed session")
        await until(lambda: simulator.sessions[1].responses, 5, "a response at once")
        mark = len(caller.heard.pcm)
        await until(lambda: voiced_frames(caller.heard.pcm[mark:]), 10, "the agent again")
        # the longest silence the caller heard: from the last word before the stall to
        # the first one after it
        frames = voiced_frames(caller.heard.pcm)
        gaps = [(b - a) * 0.020 for a, b in itertools.pairwise(frames)]
        assert max(gaps) <= 6.5, max(gaps)
    finally:
        await caller.close()
    reconnect = events.of("reconnect")
    assert reconnect and "stalled" in reconnect[0]["reason"]
    assert not events.of("end") or events.of("end")[0]["reason"] != "realtime_failed"
