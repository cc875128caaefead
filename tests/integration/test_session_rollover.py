"""Sessions are renewed before the 60-minute limit at a natural pause, never in the
middle of the agent's sentence, and the new session knows the transcript, the tool
results and the caller's DTMF so far. Real sockets; the rollover time shortened."""

from __future__ import annotations

import asyncio
import dataclasses

from agi_bridge.simulator import Scenario, Simulator

from .conftest import BridgeFactory, make_config
from .helpers import registered_caller, until
from .test_call_flow import voiced_frames

GREETING = "Hello, thanks for calling, let me read you our long list of opening hours."


async def test_session_rolls_over_at_a_pause_with_the_history(
    simulator: Simulator, start_bridge: BridgeFactory
) -> None:
    simulator.scenario = Scenario(greeting=GREETING)
    cfg = make_config()
    cfg = dataclasses.replace(cfg, realtime=dataclasses.replace(cfg.realtime, rollover_after_s=1.0))
    bridge, events = await start_bridge(cfg)
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        await until(lambda: voiced_frames(caller.heard.pcm), 10, "the greeting")
        caller.press("4")  # during the greeting: the model answers after it
        caller.press("2")
        await until(lambda: len(simulator.sessions) >= 2, 30, "a renewed session")
        first = simulator.sessions[0]
        # renewed only once the greeting and the answer to the digits had been played
        assert [r.status for r in first.responses] == ["completed", "completed"]
        spoken_ms = sum(r.audio_ms for r in first.responses)
        assert len(voiced_frames(caller.heard.pcm)) * 20 >= 0.6 * spoken_ms
        new = simulator.sessions[1]
        await until(lambda: new.session.get("instructions"), 5, "the new session's setup")
        instructions = new.session["instructions"]
        assert "already under way" in instructions
        assert f"You: {GREETING}" in instructions
        assert "Caller pressed: 42" in instructions
        await asyncio.sleep(0.5)
        assert not new.responses  # no second greeting
    finally:
        await caller.close()
    renewals = [e for e in events.of("reconnect") if e["reason"] == "rollover"]
    assert renewals
    await until(lambda: events.of("end"), 5, "the end of the call")
    assert events.of("end")[0]["reason"] == "caller_hangup"
    # the greeting session was ended by the bridge, not expired by the service
    assert simulator.sessions[0].closed
