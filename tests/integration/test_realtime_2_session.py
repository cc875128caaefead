"""gpt-realtime-2 session fields, the idle timeout and transcription usage, end to end:
virtual caller -> bridge -> Realtime simulator (strict GA schema) over real sockets."""

from __future__ import annotations

from agi_bridge.config import TurnDetectionConfig
from agi_bridge.simulator import Scenario, Simulator, Turn
from agi_bridge.virtual_caller import VirtualCaller

from .conftest import BridgeFactory, make_config
from .test_call_flow import until


async def test_reasoning_fields_idle_timeout_and_transcription_usage(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    simulator.scenario = Scenario(
        greeting="Hi.",
        turns=[Turn("Noted.", caller_text="my order"), Turn("Are you still there?")],
    )
    cfg = make_config(
        model="gpt-realtime-2",
        reasoning_effort="low",
        parallel_tool_calls=False,
        truncation_retention_ratio=0.8,
        turn_detection=TurnDetectionConfig(
            type="server_vad", silence_duration_ms=400, idle_timeout_ms=5000
        ),
    )
    bridge, events = await start_bridge(config=cfg)
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
        await until(lambda: events.of("agent_transcript"), what="greeting")
        caller.say(utterance)
        await until(lambda: events.of("caller_transcript"), what="caller transcript", timeout=15)
        await until(lambda: len(events.of("agent_transcript")) >= 2, what="answer", timeout=15)
        # then the caller says nothing: the service's idle timeout fires and it answers
        await until(lambda: events.of("caller_idle"), what="idle timeout", timeout=15)
        await until(lambda: len(events.of("agent_transcript")) >= 3, what="prompt", timeout=10)
    session = simulator.sessions[0].session
    assert session["reasoning"] == {"effort": "low"}
    assert session["parallel_tool_calls"] is False
    assert session["truncation"] == {"type": "retention_ratio", "retention_ratio": 0.8}
    assert session["audio"]["input"]["turn_detection"]["idle_timeout_ms"] == 5000
    assert session["audio"]["input"]["transcription"] == {"model": "gpt-live-transcribe"}
    timeout = simulator.sessions[0].sent_counts["input_audio_buffer.timeout_triggered"]
    assert timeout == 1
    assert events.of("agent_transcript")[2]["text"] == "Are you still there?"
    usage = events.of("transcription_usage")[0]["usage"]
    assert usage["kind"] == "duration" and usage["seconds"] > 1.0
