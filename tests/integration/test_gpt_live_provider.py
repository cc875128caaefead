"""The bridge with ``realtime.provider: gpt-live`` on real sockets: virtual caller
(Asterisk's side) -> bridge -> GPT-Live simulator. The same scenarios as the Realtime
provider's: greeting, caller speech, barge-in, a DTMF tool, hangup after goodbye."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agi_bridge.app import Bridge
from agi_bridge.call.events import CallView
from agi_bridge.config import Config, load_text
from agi_bridge.simulator import Scenario, ToolCall, Turn
from agi_bridge.simulator.live import LiveSimulator
from agi_bridge.virtual_caller import VirtualCaller

from .helpers import FakeCallAmi, registered_caller, until
from .test_call_flow import voiced_frames


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, call: CallView, kind: str, data: dict[str, Any]) -> None:
        self.items.append((kind, data))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.items if k == kind]


def live_config(url: str, *, tools: str = "[send_dtmf, hangup]", greeting: str = "") -> Config:
    return load_text(
        f"""
listen: {{audiosocket: "127.0.0.1:0", fastagi: "127.0.0.1:0", http: ""}}
ami: {{enabled: false}}
records: {{enabled: false}}
realtime: {{provider: gpt-live, url: "{url}", model: gpt-live-1, backend_model: gpt-5.5,
            connect_timeout_s: 5}}
limits: {{hangup_drain_timeout_s: 10}}
agents:
  default:
    instructions: You answer the phone for Example Corp.
    greeting: "{greeting}"
    tools: {tools}
""",
        "live.yaml",
    )


@pytest.fixture
async def live() -> AsyncIterator[LiveSimulator]:
    async with LiveSimulator(Scenario(greeting="Hello, thanks for calling.")) as sim:
        yield sim


@pytest.fixture
async def bridge_for(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Any]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # the simulator wants a Bearer key
    bridges: list[Bridge] = []

    async def start(cfg: Config, **kwargs: Any) -> tuple[Bridge, Events]:
        events = Events()
        bridge = Bridge(cfg, observers=(events,), **kwargs)
        await bridge.start()
        bridges.append(bridge)
        return bridge, events

    yield start
    for b in bridges:
        await b.close(grace=2)


async def test_greeting_and_caller_turn(
    live: LiveSimulator, bridge_for: Any, utterance: bytes
) -> None:
    live.scenario = Scenario(
        greeting="Hello, thanks for calling.",
        turns=[Turn("Your order ships tomorrow.", caller_text="order status")],
    )
    ami = FakeCallAmi()
    bridge, events = await bridge_for(live_config(live.url, greeting="Greet the caller."), ami=ami)
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        await until(lambda: len(voiced_frames(caller.heard.pcm)) > 25, what="greeting audio")
        session = live.sessions[0]
        assert session.session is not None
        assert session.session["model"] == "gpt-live-1"
        assert session.session["audio"]["input"]["format"] == {"type": "audio/pcmu", "rate": 8000}
        assert session.session["delegation"]["type"] == "responses"
        assert session.session["delegation"]["responses"]["model"] == "gpt-5.5"
        # the greeting Respond went as guidance (what it adds to the instructions)
        await until(lambda: session.commentary, what="greeting guidance")
        assert session.commentary == ["Greet the caller."]
        await asyncio.sleep(1.0)
        caller.say(utterance)
        await until(lambda: "Your order ships tomorrow." in session.spoken, timeout=15)
        await until(lambda: events.of("caller_transcript"), what="caller transcript", timeout=10)
    finally:
        await caller.close()
    await until(lambda: events.of("end"), what="call end")
    assert events.of("caller_transcript")[0]["text"] == "order status"
    assert events.of("speech_started") and events.of("speech_stopped")
    agent = [e["text"] for e in events.of("agent_transcript")]
    assert agent[0] == "Hello, thanks for calling."
    # no Realtime events reached the GPT-Live endpoint: it would have refused them
    assert session.errors_sent == []
    assert session.received_counts["session.input_audio.append"] > 50


async def test_barge_in_stops_the_agent_audio(
    live: LiveSimulator, bridge_for: Any, utterance: bytes
) -> None:
    long_reply = "This is a long answer that goes on and on for quite a while. " * 3
    live.scenario = Scenario(greeting=long_reply, speed=2.0)
    ami = FakeCallAmi()
    bridge, events = await bridge_for(live_config(live.url), ami=ami)
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        await until(lambda: len(voiced_frames(caller.heard.pcm)) > 50, what="agent audio")
        caller.say(utterance)
        await until(lambda: events.of("barge_in"), what="barge-in", timeout=10)
        heard_at_cut = len(caller.heard.pcm)
        await asyncio.sleep(1.5)
        # what the caller hears after the cut: no more of the long reply
        assert len(voiced_frames(caller.heard.pcm[heard_at_cut + 16000 :])) < 5
    finally:
        await caller.close()
    assert live.sessions[0].interruptions == 1
    assert events.of("barge_in")[0]["dropped_ms"] > 0


async def test_dtmf_tool_and_hangup_after_goodbye(
    live: LiveSimulator, bridge_for: Any, utterance: bytes
) -> None:
    live.scenario = Scenario(
        greeting="",
        turns=[
            Turn("Pressing one.", tool_calls=(ToolCall("send_dtmf", {"digits": "1"}),)),
            Turn("Done: {output}."),  # after the tool result and response.create
            Turn("Thanks, goodbye!", tool_calls=(ToolCall("hangup", {"reason": "done"}),)),
        ],
    )
    ami = FakeCallAmi()
    bridge, events = await bridge_for(live_config(live.url), ami=ami)
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        caller.say(utterance)
        await until(lambda: ami.names() == ["PlayDTMF"], what="DTMF sent", timeout=15)
        session = live.sessions[0]
        await until(lambda: session.function_outputs, what="tool result")
        await until(lambda: any(s.startswith("Done:") for s in session.spoken), what="done")
        await asyncio.sleep(1.0)  # "Done: ..." plays out
        caller.say(utterance)
        await until(lambda: len(events.of("caller_transcript")) >= 2, what="2nd turn", timeout=15)
        heard_before = len(caller.heard.pcm)  # the caller has finished speaking
        await asyncio.wait_for(caller.closed.wait(), 20)  # the agent hangs up
        goodbye_frames = voiced_frames(caller.heard.pcm[heard_before:])
    finally:
        await caller.close()
    assert ami.actions[0] == ("PlayDTMF", ("PJSIP/alice-00000001", "1", 100))
    assert '"ok": true' in session.function_outputs[0]["output"]
    await until(lambda: events.of("end"), what="call end")
    assert events.of("end")[0]["reason"] == "agent_hangup"
    # the goodbye was heard before the hangup: ~1 s of voice after the caller's last turn
    assert "Thanks, goodbye!" in session.spoken
    assert len(goodbye_frames) > 30
    assert [e["name"] for e in events.of("tool_call")] == ["send_dtmf", "hangup"]


async def test_session_usage_reaches_the_call_events(live: LiveSimulator, bridge_for: Any) -> None:
    bridge, events = await bridge_for(live_config(live.url, tools="[]"), ami=FakeCallAmi())
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        # the bridge streams 20 ms frames in real time: 10 s of session audio
        await until(lambda: events.of("session_usage"), what="usage", timeout=15)
    finally:
        await caller.close()
    assert events.of("session_usage")[0]["seconds"] == 10.0
    assert live.sessions[0].session is not None
    assert live.sessions[0].session["delegation"] == {"type": "client"}  # no tools


async def test_unregistered_caller_is_refused_before_any_session(
    live: LiveSimulator, bridge_for: Any
) -> None:
    bridge, _ = await bridge_for(live_config(live.url), ami=FakeCallAmi())
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
        await asyncio.wait_for(caller.closed.wait(), 5)
    assert live.sessions == []


async def test_check_connect_starts_a_gpt_live_session_per_agent(
    live: LiveSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agi_bridge.check import check_connect

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    lines: list[str] = []
    assert await check_connect(live_config(live.url), lines.append) is True
    assert (
        lines[-1] == "OK   realtime agent 'default': session.started (GPT-Live, model gpt-live-1)"
    )
    await live.wait_for(lambda: live.sessions and live.sessions[0].closed)
    assert live.sessions[0].close_reason == "close_requested"  # closed with session.close
    live.scenario = Scenario(api_key="sk-other")
    lines.clear()
    assert await check_connect(live_config(live.url), lines.append) is False
    assert lines[-1].startswith("FAIL realtime agent 'default': cannot connect to")
    assert "HTTP 401" in lines[-1]
