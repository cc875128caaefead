"""The GPT-Live connection over a real socket to the GPT-Live simulator: start, greeting
audio, a refused start, close with the final usage."""

from __future__ import annotations

import pytest

from agi_bridge.errors import RealtimeError
from agi_bridge.live_connection import open_live
from agi_bridge.protocol import gpt_live as gl
from agi_bridge.simulator import Scenario
from agi_bridge.simulator.live import LiveSimulator

START = gl.LiveSessionConfig(instructions="Be brief.")


async def test_start_greeting_and_close_with_usage() -> None:
    scenario = Scenario(greeting="Hello.", speed=float("inf"), response_latency_ms=0)
    async with LiveSimulator(scenario) as sim:
        conn = await open_live(sim.url, "sk-test", START, timeout=5)
        assert conn.session_id == sim.sessions[0].id
        assert conn.session["audio"]["input"]["format"] == {"type": "audio/pcmu", "rate": 8000}
        audio = b""
        async for event in conn.events():
            if isinstance(event, gl.OutputAudio):
                audio += event.audio
            if isinstance(event, gl.OutputTranscript) and "Hello" in event.delta:
                break
        assert len(audio) >= 800  # µ-law 8 kHz: at least one 100 ms chunk of voice
        await conn.send(gl.input_audio_append(b"\xff" * 8000 * 3))  # 3 s of silence
        assert await conn.close() == 3.0
        assert conn.closed == gl.SessionClosed("close_requested", 3.0)
        await sim.wait_for(lambda: sim.sessions[0].closed)


async def test_refused_start_and_refused_handshake() -> None:
    async with LiveSimulator(Scenario(api_key="sk-right")) as sim:
        with pytest.raises(RealtimeError, match="HTTP 401"):
            await open_live(sim.url, "sk-wrong", START, timeout=5)
        with pytest.raises(RealtimeError, match=r"refused session\.start: invalid_value"):
            await open_live(sim.url, "sk-right", gl.LiveSessionConfig(voice="Not A Voice"))
        with pytest.raises(RealtimeError, match="cannot connect"):
            await open_live(sim.url + "?model=gpt-live-1", "sk-right", START, timeout=5)
