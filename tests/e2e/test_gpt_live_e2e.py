"""The same phone scenarios as test_bridge_e2e.py, with ``realtime.provider: gpt-live``:
real Asterisk 22, real baresip phone, real AMI; the bridge talks to the GPT-Live simulator
(the only stand-in). Greeting, caller speech, barge-in, a DTMF tool, hangup after goodbye.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agi_bridge.app import Bridge
from agi_bridge.call.events import CallView
from agi_bridge.config import load_text
from agi_bridge.simulator import Scenario, ToolCall, Turn, plan_ms
from agi_bridge.simulator.live import LiveSimulator
from tests.e2e import harness
from tests.e2e.harness import Asterisk, RtpCapture, Softphone

pytestmark = pytest.mark.e2e

MakePhone = Callable[..., Softphone]
StartCapture = Callable[..., RtpCapture]
GREETING = "Hello, thanks for calling the test line."


class LiveRig:
    def __init__(self, asterisk: Asterisk, bridge: Bridge, sim: LiveSimulator) -> None:
        self.asterisk = asterisk
        self.bridge = bridge
        self.sim = sim
        self.events: list[tuple[str, dict[str, Any]]] = []

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.events if k == kind]


StartRig = Callable[..., Awaitable[LiveRig]]


@pytest.fixture
async def live_rig(
    asterisk_factory: Callable[..., Asterisk], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[StartRig]:
    started: list[tuple[Bridge, LiveSimulator]] = []
    monkeypatch.setitem(os.environ, "OPENAI_API_KEY", "sk-e2e")  # the simulator wants a key

    async def start(scenario: Scenario) -> LiveRig:
        agi_port, as_port = harness.free_port(), harness.free_port()
        asterisk = asterisk_factory(
            env={"AGI_BRIDGE_AGI_PORT": str(agi_port), "AGI_BRIDGE_AUDIOSOCKET_PORT": str(as_port)}
        )
        await asyncio.to_thread(asterisk.start)
        secret = tmp_path / "ami-secret"
        secret.write_text(harness.AMI_TEST_SECRET + "\n")
        sim = LiveSimulator(scenario)
        await sim.__aenter__()
        cfg = load_text(
            f"""
listen: {{audiosocket: "127.0.0.1:{as_port}", fastagi: "127.0.0.1:{agi_port}", http: ""}}
ami: {{host: 127.0.0.1, port: {harness.AMI_PORT}, username: agi_bridge,
      secret_file: "{secret}"}}
realtime: {{provider: gpt-live, url: "{sim.url}", model: gpt-live-1,
            backend_model: gpt-5.5, connect_timeout_s: 5}}
records: {{enabled: false}}
agents:
  default:
    greeting: Greet the caller.
""",
            "e2e-live.yaml",
        )
        holder: list[LiveRig] = []

        def observe(call: CallView, kind: str, data: dict[str, Any]) -> None:
            holder[0].events.append((kind, data))

        bridge = Bridge(cfg, observers=(observe,))
        holder.append(LiveRig(asterisk, bridge, sim))
        await bridge.start()
        started.append((bridge, sim))
        assert bridge.ami is not None
        async with asyncio.timeout(10):
            while not bridge.ami.connected:  # noqa: ASYNC110 - a property, no event to await
                await asyncio.sleep(0.05)
        return holder[0]

    yield start
    for bridge, sim in started:
        await bridge.close(grace=3)
        await sim.__aexit__(None, None, None)


def caller_wav(tmp_path: Path, text: str, lead: float, trail: float) -> Path:
    return harness.espeak_wav(text, tmp_path / "caller.wav", lead_silence=lead, trail_silence=trail)


async def test_greeting_is_heard_and_the_caller_gets_an_answer(
    live_rig: StartRig, softphone: MakePhone, tmp_path: Path
) -> None:
    answer = "Your order ships tomorrow morning."
    r = await live_rig(Scenario(greeting=GREETING, turns=[Turn(answer)]))
    wav = caller_wav(tmp_path, "Hello, where is my order?", lead=4.0, trail=6.0)
    result = await softphone().acall(harness.EXT_AGENT_DEFAULT, wav, duration=12.0)
    assert result.established, result.log
    assert result.recording is not None
    greeting_s = plan_ms(GREETING, 65) / 1000
    assert harness.speech_present(result.recording, 0.0, greeting_s + 1.0, min_active=1.0)
    session = r.sim.sessions[0]
    assert session.errors_sent == []  # every event the bridge sent was GPT-Live's
    assert session.caller_audio_ms > 2000
    assert session.spoken[:2] == [GREETING, answer]
    assert harness.speech_present(result.recording, 4.0 + 1.5, 12.0, min_active=1.0)
    assert r.of("agent_transcript")[0]["text"] == GREETING
    assert r.of("start")[0]["channel"].startswith("PJSIP/6001-")


async def test_barge_in_stops_the_agent_on_the_phone(
    live_rig: StartRig, softphone: MakePhone, tmp_path: Path
) -> None:
    long_greeting = "This greeting goes on and on so that the caller can talk over it. " * 4
    r = await live_rig(Scenario(greeting=long_greeting, speed=1.5))
    wav = caller_wav(tmp_path, "Stop, I have a question.", lead=3.0, trail=8.0)
    result = await softphone().acall(harness.EXT_AGENT_DEFAULT, wav, duration=12.0)
    assert result.established, result.log
    assert r.of("barge_in"), "the bridge cut the agent when the caller talked"
    assert r.sim.sessions[0].interruptions >= 1
    assert result.recording is not None
    # the greeting is ~16 s long: after the cut (~4-6 s) the phone hears no more of it
    assert harness.active_seconds(result.recording, 7.5, 12.0, threshold_dbfs=-45.0) < 1.0


async def test_send_dtmf_reaches_the_phone_as_rfc4733_digits(
    live_rig: StartRig, softphone: MakePhone, rtp_capture: StartCapture, tmp_path: Path
) -> None:
    tool = ToolCall("send_dtmf", {"digits": "1#"})
    r = await live_rig(
        Scenario(greeting="Hi.", turns=[Turn("Pressing one, then hash.", tool_calls=(tool,))])
    )
    capture = rtp_capture()
    wav = caller_wav(tmp_path, "Please press one and hash.", lead=1.5, trail=8.0)
    phone = softphone()
    result = await phone.acall(harness.EXT_AGENT_DEFAULT, wav, duration=10.0)
    packets = capture.stop()
    assert result.established, result.log
    assert harness.dtmf_digits(harness.from_asterisk(packets)) == ["1", "#"]
    assert phone.received_dtmf == "1#"
    outputs = r.sim.sessions[0].function_outputs
    assert len(outputs) == 1, "exactly one function_call_output per call_id"
    assert outputs[0]["output"] == '{"ok": true, "digits_sent": "1#"}'


async def test_hangup_tool_ends_the_call_after_the_goodbye_was_heard(
    live_rig: StartRig, softphone: MakePhone, tmp_path: Path
) -> None:
    goodbye = "Thank you for calling, have a great day, goodbye."
    tool = ToolCall("hangup", {"reason": "caller is done"})
    r = await live_rig(Scenario(greeting="Hi.", turns=[Turn(goodbye, tool_calls=(tool,))]))
    wav = caller_wav(tmp_path, "That is all, thank you.", lead=1.5, trail=15.0)
    result = await softphone().acall(harness.EXT_AGENT_DEFAULT, wav, duration=18.0)
    assert result.established, result.log
    assert result.ended_by_remote, "the agent hung up, not the phone"
    end = r.of("end")
    assert end and end[0]["reason"] == "agent_hangup" and end[0]["detail"] == "caller is done"
    assert result.recording is not None
    goodbye_s = plan_ms(goodbye, 65) / 1000
    heard = harness.active_seconds(result.recording, 3.0, None, threshold_dbfs=-45.0)
    assert heard >= goodbye_s * 0.6  # the synthetic voice has pauses between words
    await asyncio.to_thread(r.asterisk.wait_for_no_channels, 5)
