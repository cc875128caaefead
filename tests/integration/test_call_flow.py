"""A call over real sockets: virtual caller (Asterisk's side) -> bridge -> simulator."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

import pytest

from agi_bridge.audio import SLIN_FRAME_BYTES, rms_dbfs
from agi_bridge.simulator import Scenario, Simulator, ToolCall, Turn
from agi_bridge.virtual_caller import VirtualCaller

from .conftest import BridgeFactory, make_config

SPEECH_DBFS = -45.0


async def until(pred: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or pred}")
        await asyncio.sleep(0.02)


def voiced_frames(pcm: bytes | bytearray) -> list[int]:
    """Indices of 20 ms frames with speech energy."""
    return [
        i // SLIN_FRAME_BYTES
        for i in range(0, len(pcm) - SLIN_FRAME_BYTES + 1, SLIN_FRAME_BYTES)
        if rms_dbfs(bytes(pcm[i : i + SLIN_FRAME_BYTES])) > SPEECH_DBFS
    ]


async def test_greeting_arrives_paced_in_320_byte_frames(start_bridge: BridgeFactory) -> None:
    bridge, events = await start_bridge()
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
        await until(lambda: len(voiced_frames(caller.heard.pcm)) > 25, what="greeting audio")
        await asyncio.sleep(1.0)
    assert caller.heard.bad_sizes == []
    intervals = caller.heard.intervals_ms()[5:]  # skip connection set-up
    assert len(intervals) > 50
    # the simulator sends audio ~4x faster than real time; the bridge must not
    assert 19.0 < statistics.mean(intervals) < 21.0
    assert statistics.median(intervals) == pytest.approx(20.0, abs=3.0)
    assert max(intervals) < 80.0, "a frame arrived more than 60 ms late"
    # silence frames before the first agent audio keep AudioSocket's 2 s timeout away
    assert voiced_frames(caller.heard.pcm)[0] > 0
    assert events.of("agent_transcript")[0]["text"] == "Hello, thanks for calling."


async def test_caller_speech_reaches_model_and_agent_answers(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    simulator.scenario = Scenario(
        greeting="Hi.", turns=[Turn("Your order ships tomorrow.", caller_text="order status")]
    )
    bridge, events = await start_bridge()
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
        await until(lambda: events.of("agent_transcript"), what="greeting")
        await asyncio.sleep(0.5)
        heard_before = len(caller.heard.pcm)
        caller.say(utterance)
        await until(lambda: simulator.sessions and simulator.sessions[0].speech_started_count)
        await until(lambda: len(events.of("agent_transcript")) >= 2, what="answer", timeout=15)
        await until(lambda: len(voiced_frames(caller.heard.pcm[heard_before:])) > 20)
    session = simulator.sessions[0]
    assert session.session["audio"]["input"]["format"]["type"] == "audio/pcmu"
    assert session.session["audio"]["output"]["format"]["type"] == "audio/pcmu"
    # all the caller's speech went to the model, as µ-law (1 byte per sample)
    assert session.caller_audio_bytes >= len(utterance) // 2 * 0.95
    assert events.of("caller_transcript")[0]["text"] == "order status"
    assert events.of("agent_transcript")[1]["text"] == "Your order ships tomorrow."
    latency = events.of("turn_latency")
    assert latency and 0 < latency[0]["ms"] < 3000


async def test_barge_in_clears_playout_and_truncates_at_heard_audio(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    # one long continuous "word" so that the agent's audio has no pauses to confuse the
    # count of what the caller heard
    long_reply = "A" + "a" * 150 + "h"  # ~ 10 s at 65 ms per character
    simulator.scenario = Scenario(greeting="", turns=[Turn(long_reply), Turn("Sure.")])
    bridge, events = await start_bridge(make_config(greeting=""))
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
        caller.say(utterance)
        await until(lambda: voiced_frames(caller.heard.pcm), what="agent reply", timeout=15)
        first_voiced = voiced_frames(caller.heard.pcm)[0]
        await asyncio.sleep(2.0)  # the caller hears two seconds of the reply, then talks
        caller.say(utterance)
        await until(lambda: events.of("barge_in"), what="barge-in", timeout=5)
        await until(lambda: simulator.sessions[0].truncates, what="truncate", timeout=5)
        await asyncio.sleep(0.5)
    barge = events.of("barge_in")[0]
    truncate = simulator.sessions[0].truncates[0]
    assert truncate["audio_end_ms"] == barge["audio_end_ms"]
    assert barge["dropped_ms"] > 3000, "most of the 10 s reply was still queued"
    # what the caller actually heard of that item, counted at the caller
    voiced = [i for i in voiced_frames(caller.heard.pcm) if i >= first_voiced]
    run_end = first_voiced
    while run_end + 1 in voiced:
        run_end += 1
    heard_ms = (run_end - first_voiced + 1) * 20
    assert abs(truncate["audio_end_ms"] - heard_ms) <= 20 + 20  # one frame + edge frame
    assert 1500 < heard_ms < 4500
    # the playout stopped: the reply did not continue after the cut
    assert run_end - first_voiced < 300


async def test_caller_hangup_closes_the_realtime_session(
    simulator: Simulator, start_bridge: BridgeFactory
) -> None:
    bridge, events = await start_bridge()
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
        await until(lambda: simulator.sessions, what="session")
        caller.hangup()
    await until(lambda: simulator.sessions[0].closed, what="simulator session closed")
    await until(lambda: events.of("end"), what="call end")
    assert events.of("end")[0]["reason"] == "caller_hangup"
    assert not bridge.calls


async def test_agent_hangup_tool_waits_for_goodbye_then_sends_hangup_frame(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    goodbye = "Thank you for calling, goodbye."
    simulator.scenario = Scenario(
        greeting="",
        turns=[Turn(goodbye, tool_calls=(ToolCall("hangup", {"reason": "caller done"}),))],
    )
    bridge, events = await start_bridge(make_config(greeting=""))
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
        caller.say(utterance)
        await asyncio.wait_for(caller.closed.wait(), 20)
    assert caller.heard.hangup_at is not None, "the bridge must send the AudioSocket hangup frame"
    await until(lambda: events.of("end"), what="call end")
    end = events.of("end")[0]
    assert (end["reason"], end["detail"]) == ("agent_hangup", "caller done")
    # the whole goodbye was played before the hangup: the simulator produced N ms of audio
    produced_ms = simulator.sessions[0].responses[-1].audio_ms
    voiced = voiced_frames(caller.heard.pcm)
    assert (voiced[-1] - voiced[0] + 1) * 20 >= produced_ms - 60
    assert caller.heard.times[-1] <= caller.heard.hangup_at
    await until(lambda: simulator.sessions[0].closed, what="simulator session closed")


async def test_realtime_unreachable_ends_call_with_hangup_frame(
    simulator: Simulator, start_bridge: BridgeFactory
) -> None:
    simulator.scenario = Scenario(refuse_connect=503)
    bridge, events = await start_bridge()
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
        await asyncio.wait_for(caller.closed.wait(), 10)
    assert caller.heard.hangup_at is not None  # the dialplan continues to its fallback
    await until(lambda: events.of("end"), what="call end")
    assert events.of("end")[0]["reason"] == "realtime_failed"


async def test_realtime_fatal_error_mid_call_ends_call(
    simulator: Simulator, start_bridge: BridgeFactory
) -> None:
    simulator.scenario = Scenario(greeting="Hi.", error_after_ms=1500, error_code="invalid_api_key")
    bridge, events = await start_bridge()
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
        await asyncio.wait_for(caller.closed.wait(), 10)
    assert caller.heard.hangup_at is not None
    await until(lambda: events.of("end"), what="call end")
    assert events.of("end")[0]["reason"] == "realtime_failed"
    assert "invalid_api_key" in events.of("end")[0]["detail"]
    assert len(simulator.sessions) == 1, "no new session can fix a bad key"


async def test_expired_session_is_resumed_with_the_transcript_so_far(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    # the service ends every session after 60 minutes; the call must go on
    simulator.scenario = Scenario(
        greeting="Hello there.",
        turns=[Turn("Your order ships tomorrow.", caller_text="where is my order")],
        error_after_ms=6000,
        error_code="session_expired",
    )
    bridge, events = await start_bridge()
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
        await asyncio.sleep(1.0)
        caller.say(utterance)
        await until(lambda: events.of("reconnect"), what="reconnect", timeout=15)
        simulator.scenario = Scenario(default_reply="Still here.")
        await until(lambda: len(simulator.sessions) == 2, what="second session")
        await asyncio.sleep(0.5)
        caller.say(utterance)
        await until(
            lambda: "Still here." in [e["text"] for e in events.of("agent_transcript")],
            what="answer on the resumed session",
            timeout=15,
        )
        assert not caller.closed.is_set() and not events.of("end")
    assert "session_expired" in events.of("reconnect")[0]["reason"]
    resumed = simulator.sessions[1].session["instructions"]
    assert "Caller: where is my order" in resumed
    assert "You: Your order ships tomorrow." in resumed
    assert next(r.script for r in simulator.sessions[1].responses) != "greeting"
    intervals = caller.heard.intervals_ms()[5:]
    assert max(intervals) < 80.0, "the caller's stream kept its cadence across the resume"


async def test_garbage_on_one_connection_does_not_disturb_another_call(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    simulator.scenario = Scenario(greeting="Hello there.", send_unknown_events=True)
    bridge, events = await start_bridge()
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as good:
        await until(lambda: voiced_frames(good.heard.pcm), what="greeting on the good call")
        reader, writer = await asyncio.open_connection("127.0.0.1", bridge.audiosocket.port)
        writer.write(b"\x01\x00\x10" + bytes(range(16)) + b"\x42\x00\x04junk")
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(), 5)  # the bridge closes it
        writer.close()
        await until(lambda: len(events.of("end")) == 1, what="bad call ended")
        # the good call keeps its cadence and its conversation
        mark = len(good.heard.times)
        good.say(utterance)
        await until(lambda: len(events.of("agent_transcript")) >= 2, timeout=15, what="answer")
        await asyncio.sleep(0.5)
    assert rest.endswith(b"\x00\x00\x00"), "the bad call got a hangup frame"
    end = events.of("end")[0]
    assert end["reason"] == "protocol_error" and "0x42" in end["detail"]
    intervals = good.heard.intervals_ms()[mark:]
    assert statistics.mean(intervals) == pytest.approx(20.0, abs=1.0)
    assert good.heard.bad_sizes == []


async def test_caller_dtmf_reaches_model_as_text(
    simulator: Simulator, start_bridge: BridgeFactory
) -> None:
    bridge, _ = await start_bridge(make_config(greeting=""))
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
        await until(lambda: simulator.sessions, what="session")
        await asyncio.sleep(0.3)
        caller.press("5")
        await until(
            lambda: any(
                e.get("type") == "conversation.item.create" for e in simulator.sessions[0].received
            ),
            what="user text item",
        )
    items = [e for e in simulator.sessions[0].received if e["type"] == "conversation.item.create"]
    assert items[0]["item"]["content"][0]["text"] == "[caller pressed 5]"


async def test_malformed_realtime_message_ends_only_that_call(
    simulator: Simulator, start_bridge: BridgeFactory
) -> None:
    bridge, events = await start_bridge()
    simulator.scenario = Scenario(greeting="Hello there.")
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as good:
        await until(lambda: simulator.sessions, what="first session")
        simulator.scenario = Scenario(greeting="Hi.", malformed_after_ms=800)
        async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as bad:
            await asyncio.wait_for(bad.closed.wait(), 10)
        await until(lambda: events.of("end"), what="bad call ended")
        mark = len(good.heard.times)
        await asyncio.sleep(1.0)
        (end,) = events.of("end")  # only the bad call ended
    assert bad.heard.hangup_at is not None  # the dialplan falls back for that caller only
    assert end["reason"] == "protocol_error" and "not JSON" in end["detail"]
    assert len(good.heard.times) - mark >= 40  # the other call kept its 20 ms stream


async def test_caller_interrupting_the_goodbye_cancels_the_hangup(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    goodbye = "Thank you for calling, it was a pleasure to help you today, goodbye."
    simulator.scenario = Scenario(
        greeting="",
        turns=[
            Turn(goodbye, tool_calls=(ToolCall("hangup", {"reason": "done"}),)),
            Turn("Of course, what else can I do?"),
        ],
    )
    bridge, events = await start_bridge(make_config(greeting=""))
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
        caller.say(utterance)
        # the hangup tool is running: it waits for the goodbye to be heard
        await until(lambda: events.of("tool_call"), what="hangup tool call", timeout=15)
        assert voiced_frames(caller.heard.pcm)
        caller.say(utterance)  # "wait, one more thing"
        await until(lambda: events.of("tool_result"), what="hangup tool result", timeout=20)
        await asyncio.sleep(1.0)
        assert not caller.closed.is_set(), "the caller was hung up on mid-sentence"
        assert not events.of("end")
    result = events.of("tool_result")[0]["result"]
    assert result["ok"] is False and "caller started speaking" in result["error"]
