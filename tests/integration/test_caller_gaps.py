"""A caller stream with gaps: what AudioSocket delivers from a Local channel.

When the far side of a Local channel waits in WaitExten()/Read() (a phone menu reached by
`agi-bridge call Local/...`), Asterisk sends no frames at all (verified on 22.10.1). The
Realtime VAD runs on the appended audio, so without help it would never hear the menu's
prompt end. The bridge appends silence for such gaps (call.CALLER_GAP_S).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from agi_bridge.audio import SLIN_FRAME_BYTES
from agi_bridge.call import CALLER_GAP_S
from agi_bridge.protocol import audiosocket as asock
from agi_bridge.simulator import Scenario, Simulator, Turn

from .conftest import BridgeFactory, make_config
from .test_call_flow import until


async def drain(reader: asyncio.StreamReader) -> None:
    """Read what the bridge sends (its paced frames), like Asterisk does."""
    while await reader.read(65536):
        pass


async def test_silence_is_appended_while_asterisk_sends_nothing(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    simulator.scenario = Scenario(turns=[Turn("Okay.")])
    bridge, events = await start_bridge(make_config(greeting=""))
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.audiosocket.port)
    reading = asyncio.create_task(drain(reader))
    try:
        writer.write(asock.uuid_frame(uuid.uuid4()))
        # the prompt: speech paced at 20 ms, as Asterisk plays it ...
        t0 = time.monotonic()
        speech = utterance[: 2 * 8000 * 2]  # 2 s
        for n, i in enumerate(range(0, len(speech) - SLIN_FRAME_BYTES + 1, SLIN_FRAME_BYTES)):
            await asyncio.sleep(max(0.0, t0 + n * 0.02 - time.monotonic()))
            writer.write(asock.audio_frame(speech[i : i + SLIN_FRAME_BYTES]))
        # ... then nothing at all (WaitExten): the model must still hear the prompt end
        await until(lambda: events.of("agent_transcript"), 5.0, "the answer to the prompt")
        assert [e["text"] for e in events.of("agent_transcript")] == ["Okay."]
        assert events.of("speech_stopped")
        call = next(iter(bridge.calls.values()))
        assert call.stats.caller_gap_fill_ms >= 400  # silence_duration_ms of the agent
    finally:
        writer.close()
        reading.cancel()
    session = simulator.sessions[0]
    assert session.speech_stopped_count == 1


async def test_a_continuous_stream_gets_no_filler(
    simulator: Simulator, start_bridge: BridgeFactory
) -> None:
    bridge, _ = await start_bridge(make_config(greeting=""))
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.audiosocket.port)
    reading = asyncio.create_task(drain(reader))
    try:
        writer.write(asock.uuid_frame(uuid.uuid4()))
        t0 = time.monotonic()
        for n in range(round(4 * CALLER_GAP_S / 0.02) + 50):  # a phone: RTP never stops
            await asyncio.sleep(max(0.0, t0 + n * 0.02 - time.monotonic()))
            writer.write(asock.audio_frame(bytes(SLIN_FRAME_BYTES)))
        call = next(iter(bridge.calls.values()))
        assert call.stats.caller_gap_fill_ms == 0
        assert call.stats.frames_in > 50
    finally:
        writer.close()
        reading.cancel()
