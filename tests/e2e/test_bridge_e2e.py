"""agi_bridge end to end: real Asterisk 22, real baresip phone, real sockets.

A phone (6001) dials the agent extension; Asterisk runs the shipped dialplan into the
bridge, through each transport in turn (``TRANSPORTS``: the same scenarios, parametrised);
the bridge talks to the Realtime simulator (the only stand-in: the OpenAI service is
unreachable here) and acts on the call. What the phone heard is recorded by baresip; what
Asterisk sent to it is captured with tshark.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agi_bridge.app import Bridge
from agi_bridge.call import CallView
from agi_bridge.config import load_text
from agi_bridge.realtime import connector
from agi_bridge.simulator import Scenario, Simulator, ToolCall, Turn, plan_ms
from tests.e2e import harness
from tests.e2e.harness import Asterisk, RtpCapture, Softphone

pytestmark = pytest.mark.e2e

MakePhone = Callable[..., Softphone]
StartCapture = Callable[..., RtpCapture]

GREETING = "Hello, thanks for calling the test line."


@dataclass(frozen=True)
class Transport:
    """One way into the bridge: what the bridge's config adds, and what the phone dials."""

    name: str
    dial: str  # extension of agi-bridge-phones the phone calls
    config: str = ""  # extra YAML for the bridge; ARI_PASSWORD_FILE is replaced by rig()
    fallback_reason: str = ""  # AGI_BRIDGE_FAILURE when the bridge ends without "completed"


def _ari(media: str) -> Transport:
    return Transport(
        f"ari-{media}",
        harness.EXT_ARI_DEFAULT,
        config=f"""ari:
  enabled: true
  url: "{harness.ARI_URL}"
  username: {harness.ARI_USER}
  password_file: "ARI_PASSWORD_FILE"
  media: {media}""",
        fallback_reason="stasis-SUCCESS-failed",  # the bridge said failed, then continue
    )


AUDIOSOCKET = Transport(
    "audiosocket", harness.EXT_AGENT_DEFAULT, fallback_reason="audiosocket-ended"
)
TRANSPORTS = [AUDIOSOCKET, _ari("rtp"), _ari("websocket")]
# for what only one transport has (FastAGI status without AMI, AudioSocket's max_calls)
audiosocket_only = pytest.mark.parametrize(
    "transport", [AUDIOSOCKET], indirect=True, ids=["audiosocket"]
)


@pytest.fixture(params=TRANSPORTS, ids=lambda t: t.name)
def transport(request: pytest.FixtureRequest) -> Transport:
    return request.param  # type: ignore[no-any-return]


class Rig:
    """Asterisk + bridge + simulator for one test."""

    def __init__(self, asterisk: Asterisk, bridge: Bridge, sim: Simulator, dial: str) -> None:
        self.dial = dial  # the extension that reaches the agent through this transport
        self.asterisk = asterisk
        self.bridge = bridge
        self.sim = sim
        self.events: list[tuple[str, dict[str, Any]]] = []

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.events if k == kind]

    def fallback_reasons(self) -> list[str]:
        rx = re.compile(r"agi-bridge: fallback for \S+ agent \S+ reason (\S+)$")
        return [m[1] for m in map(rx.search, self.asterisk.log_text().splitlines()) if m]


StartRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def rig(
    asterisk_factory: Callable[..., Asterisk], tmp_path: Path, transport: Transport
) -> AsyncIterator[StartRig]:
    started: list[tuple[Bridge, Simulator]] = []

    async def start(
        scenario: Scenario, agent_yaml: str = "", *, ami_up: bool = True, extra_yaml: str = ""
    ) -> Rig:
        """``ami_up=False``: the bridge's AMI points at a port nobody listens on (AMI down)."""
        agi_port, as_port = harness.free_port(), harness.free_port()
        ami_port = harness.AMI_PORT if ami_up else harness.free_port()
        asterisk = asterisk_factory(
            env={"AGI_BRIDGE_AGI_PORT": str(agi_port), "AGI_BRIDGE_AUDIOSOCKET_PORT": str(as_port)}
        )
        await asyncio.to_thread(asterisk.start)
        secret = tmp_path / "ami-secret"
        secret.write_text(harness.AMI_TEST_SECRET + "\n")
        ari_password = tmp_path / "ari-password"
        ari_password.write_text(harness.ARI_TEST_PASSWORD + "\n")
        transport_yaml = transport.config.replace("ARI_PASSWORD_FILE", str(ari_password))
        cfg = load_text(
            f"""
listen: {{audiosocket: "127.0.0.1:{as_port}", fastagi: "127.0.0.1:{agi_port}", http: ""}}
ami: {{host: 127.0.0.1, port: {ami_port}, username: agi_bridge,
      secret_file: "{secret}"}}
realtime: {{provider: url, url: "ws://unused", connect_timeout_s: 5}}
records: {{enabled: false}}
agents:
  default:
    greeting: Greet the caller.
    turn_detection: {{type: server_vad, silence_duration_ms: 500}}
{agent_yaml}
{transport_yaml}
{extra_yaml}
""",
            "e2e.yaml",
        )
        sim = Simulator(scenario)
        await sim.start()
        holder: list[Rig] = []

        def observe(call: CallView, kind: str, data: dict[str, Any]) -> None:
            holder[0].events.append((kind, data))

        bridge = Bridge(cfg, connect=connector(cfg.realtime, url=sim.url), observers=(observe,))
        holder.append(Rig(asterisk, bridge, sim, transport.dial))
        await bridge.start()
        started.append((bridge, sim))
        assert bridge.ami is not None
        async with asyncio.timeout(10):
            while ami_up and not bridge.ami.connected:  # noqa: ASYNC110 - a property
                await asyncio.sleep(0.05)
        return holder[0]

    yield start
    for bridge, sim in started:
        await bridge.close(grace=3)
        await sim.close()


def caller_wav(tmp_path: Path, text: str, lead: float, trail: float) -> Path:
    return harness.espeak_wav(text, tmp_path / "caller.wav", lead_silence=lead, trail_silence=trail)


async def test_greeting_is_heard_and_the_caller_gets_an_answer(
    rig: StartRig, softphone: MakePhone, tmp_path: Path
) -> None:
    answer = "Your order ships tomorrow morning."
    r = await rig(Scenario(greeting=GREETING, turns=[Turn(answer)]))
    wav = caller_wav(tmp_path, "Hello, where is my order?", lead=4.0, trail=6.0)
    result = await softphone().acall(r.dial, wav, duration=12.0)
    assert result.established, result.log
    assert result.recording is not None
    greeting_s = plan_ms(GREETING, 65) / 1000
    # 1. the greeting reaches the phone: speech energy while the agent greets
    assert harness.speech_present(result.recording, 0.0, greeting_s + 1.0, min_active=1.0)
    # 2. the caller's speech reached the model, and the agent's answer reached the phone
    session = r.sim.sessions[0]
    assert session.speech_started_count >= 1
    assert session.caller_audio_ms > 2000
    assert [d["text"] for d in r.of("agent_transcript")][:2] == [GREETING, answer]
    answered_at = 4.0 + 1.5  # the caller's speech ends after ~1.5 s of espeak
    assert harness.speech_present(result.recording, answered_at, 12.0, min_active=1.0)
    latency = r.of("turn_latency")
    assert latency and latency[0]["ms"] < 3000
    # the channel identity came over FastAGI: the call is tied to the PJSIP channel
    starts = r.of("start")
    assert starts and starts[0]["channel"].startswith("PJSIP/6001-")
    assert starts[0]["caller"] == "6001"


async def test_send_dtmf_reaches_the_phone_as_rfc4733_digits(
    rig: StartRig, softphone: MakePhone, rtp_capture: StartCapture, tmp_path: Path
) -> None:
    r = await rig(
        Scenario(
            greeting="Hi.",
            turns=[
                Turn(
                    "Pressing one, then hash.",
                    tool_calls=(ToolCall("send_dtmf", {"digits": "1#"}),),
                )
            ],
        )
    )
    capture = rtp_capture()
    wav = caller_wav(tmp_path, "Please press one and hash.", lead=1.5, trail=8.0)
    phone = softphone()
    result = await phone.acall(r.dial, wav, duration=10.0)
    packets = capture.stop()
    assert result.established, result.log
    # the phone got exactly the two digits, as RFC 4733 events from Asterisk
    assert harness.dtmf_digits(harness.from_asterisk(packets)) == ["1", "#"]
    assert phone.received_dtmf == "1#"
    outputs = r.sim.sessions[0].function_outputs
    assert len(outputs) == 1, "exactly one function_call_output per call_id"
    assert outputs[0]["output"] == '{"ok": true, "digits_sent": "1#"}'
    assert [d["digit"] for d in r.of("dtmf_sent")] == ["1", "#"]


async def test_hangup_tool_ends_the_call_after_the_goodbye_was_heard(
    rig: StartRig, softphone: MakePhone, rtp_capture: StartCapture, tmp_path: Path
) -> None:
    goodbye = "Thank you for calling, have a great day, goodbye."
    r = await rig(
        Scenario(
            greeting="Hi.",
            turns=[Turn(goodbye, tool_calls=(ToolCall("hangup", {"reason": "caller is done"}),))],
        )
    )
    capture = rtp_capture()
    wav = caller_wav(tmp_path, "That is all, thank you.", lead=1.5, trail=15.0)
    result = await softphone().acall(r.dial, wav, duration=18.0)
    packets = capture.stop()
    assert result.established, result.log
    assert result.ended_by_remote, "the agent hung up, not the phone"
    end = r.of("end")
    assert end and end[0]["reason"] == "agent_hangup" and end[0]["detail"] == "caller is done"
    log = r.asterisk.log_text()
    assert "completed by agent default" in log
    assert r.fallback_reasons() == []
    # the goodbye reached the phone in full before the BYE: the phone's recording holds
    # at least the goodbye's length of speech after the caller stopped talking
    assert result.recording is not None
    goodbye_s = plan_ms(goodbye, 65) / 1000
    heard = harness.active_seconds(result.recording, 3.0, None, threshold_dbfs=-45.0)
    voiced_share = 0.6  # the synthetic voice has pauses between words
    assert heard >= goodbye_s * voiced_share
    # and the last agent audio packet left Asterisk before the call ended
    audio = [p for p in harness.from_asterisk(packets) if p.payload_type == 0]
    assert audio
    await asyncio.to_thread(r.asterisk.wait_for_no_channels, 5)


async def test_realtime_unreachable_falls_back_and_nothing_hangs(
    rig: StartRig, softphone: MakePhone, transport: Transport
) -> None:
    r = await rig(Scenario(refuse_connect=503))
    result = await softphone().acall(r.dial, None, duration=20.0)
    assert result.established, result.log
    assert result.ended_by_remote and result.duration is not None and result.duration < 12.0
    assert result.recording is not None
    assert harness.speech_present(result.recording, 0.0, 4.0, min_active=1.0)  # "I'm sorry..."
    assert r.fallback_reasons() == [transport.fallback_reason]
    assert r.of("end")[0]["reason"] == "realtime_failed"
    await asyncio.to_thread(r.asterisk.wait_for_no_channels, 5)
    assert not r.bridge.calls


async def test_agent_audio_leaves_asterisk_evenly_paced(
    rig: StartRig, softphone: MakePhone, rtp_capture: StartCapture
) -> None:
    long_greeting = (
        "Hello and welcome. This is a longer greeting, so that the phone receives several "
        "seconds of agent speech that the bridge must pace at twenty milliseconds."
    )
    r = await rig(Scenario(greeting=long_greeting))
    capture = rtp_capture()
    result = await softphone().acall(r.dial, None, duration=9.0)
    packets = capture.stop()
    assert result.established, result.log
    intervals = harness.audio_intervals_ms(harness.from_asterisk(packets))
    assert len(intervals) > 200
    deviation = np.abs(intervals - 20.0)
    # generous bounds: the exact figures are in `make bench`
    assert 19.0 <= float(np.median(intervals)) <= 21.0
    assert float(np.percentile(deviation, 99)) < 15.0
    assert result.recording is not None
    assert harness.speech_present(result.recording, 0.0, 8.0, min_active=3.0)


async def test_transfer_moves_the_caller_to_the_target_extension(
    rig: StartRig, softphone: MakePhone, tmp_path: Path
) -> None:
    r = await rig(
        Scenario(
            greeting="Hi.",
            turns=[
                Turn(
                    "Let me put you through.",
                    tool_calls=(
                        ToolCall("transfer", {"destination": "greeter", "summary": "wants hello"}),
                    ),
                )
            ],
        ),
        agent_yaml="""    transfer_targets:
      greeter: {context: agi-bridge-phones, exten: "601", description: plays hello world}""",
    )
    wav = caller_wav(tmp_path, "Put me through to the greeter.", lead=1.5, trail=12.0)
    result = await softphone().acall(r.dial, wav, duration=15.0)
    assert result.established, result.log
    # 601 plays hello-world and hangs up: the caller ended up there, not in the fallback
    assert result.ended_by_remote, result.log
    log = r.asterisk.log_text()
    assert re.search(r"Playback\(\"PJSIP/6001-\w+\", \"hello-world\"\)", log), log[-3000:]
    assert r.fallback_reasons() == []
    assert "completed by agent" not in log
    end = r.of("end")
    assert end and end[0]["reason"] == "transferred"
    transfer = r.of("transfer")
    assert transfer and transfer[0]["destination"] == "greeter"
    assert transfer[0]["summary"] == "wants hello"
    await asyncio.to_thread(r.asterisk.wait_for_no_channels, 5)


async def test_barge_in_stops_the_agent_and_truncates_at_what_the_phone_received(
    rig: StartRig, softphone: MakePhone, rtp_capture: StartCapture, tmp_path: Path
) -> None:
    # one long word: voiced from start to end, so every frame of it that reached the phone
    # is non-silent and the phone's share of the item can be counted exactly
    long_word = "Hel" + "lo" * 60
    r = await rig(Scenario(greeting=long_word, turns=[Turn("Sure, go ahead.")]))
    capture = rtp_capture()
    wav = caller_wav(tmp_path, "Wait, wait, I have a question.", lead=3.0, trail=5.0)
    result = await softphone().acall(r.dial, wav, duration=9.0)
    packets = capture.stop()
    assert result.established, result.log
    cuts = r.of("barge_in")
    assert len(cuts) == 1, r.events
    truncates = r.sim.sessions[0].truncates
    assert len(truncates) == 1 and truncates[0]["audio_end_ms"] == cuts[0]["audio_end_ms"]
    heard_ms = harness.first_voiced_run_frames(harness.from_asterisk(packets)) * 20
    full_ms = plan_ms(long_word, 65)
    # the agent stopped at the phone: far less than the whole greeting was played
    assert 1000 < heard_ms < full_ms - 2000, (heard_ms, full_ms)
    # and the model was told exactly what the phone received (one frame of slack)
    assert abs(truncates[0]["audio_end_ms"] - heard_ms) <= 20, (truncates, heard_ms)


async def test_a_realtime_drop_mid_call_is_survived(
    rig: StartRig, softphone: MakePhone, tmp_path: Path
) -> None:
    answer = "Yes, I am still here, and I can hear you clearly again."
    r = await rig(Scenario(greeting="Hi.", turns=[Turn(answer)], close_after_ms=2500))
    wav = caller_wav(tmp_path, "Hello, are you still there?", lead=5.0, trail=6.0)
    call = asyncio.create_task(softphone().acall(r.dial, wav, duration=13.0))
    # the drop hits the first session only: a session takes the scenario current when it
    # opens, so the resumed one gets the same script without the fault
    async with asyncio.timeout(10):
        while not r.sim.sessions:  # noqa: ASYNC110 - the simulator has no event for it
            await asyncio.sleep(0.02)
    r.sim.scenario = Scenario(turns=[Turn(answer)])
    result = await call
    assert result.established, result.log
    assert not result.ended_by_remote, "the caller's line stayed up through the drop"
    assert len(r.of("reconnect")) == 1, r.events  # one drop, one resumed session
    assert len(r.sim.sessions) == 2
    # the resumed session heard the caller and its answer reached the phone
    assert any(s.speech_started_count for s in r.sim.sessions[1:])
    assert answer in [d["text"] for d in r.of("agent_transcript")]
    assert result.recording is not None
    assert harness.speech_present(result.recording, 6.5, 13.0, min_active=0.8)
    assert r.fallback_reasons() == []


# ------------------------------------------------------------- issue 12: faults, shutdown

HANGUP_GOODBYE = "Thank you for calling, have a great day, goodbye."


def hangup_scenario() -> Scenario:
    return Scenario(
        greeting="Hi.",
        turns=[
            Turn(HANGUP_GOODBYE, tool_calls=(ToolCall("hangup", {"reason": "caller is done"}),))
        ],
    )


@audiosocket_only
async def test_completed_reaches_the_dialplan_while_ami_is_down(
    rig: StartRig, softphone: MakePhone, tmp_path: Path
) -> None:
    r = await rig(hangup_scenario(), ami_up=False)
    assert r.bridge.ami is not None and not r.bridge.ami.connected
    wav = caller_wav(tmp_path, "That is all, thank you.", lead=1.5, trail=15.0)
    result = await softphone().acall(harness.EXT_AGENT_DEFAULT, wav, duration=18.0)
    assert result.established, result.log
    assert result.ended_by_remote, "the agent hung up, not the phone"
    assert r.of("end")[0]["reason"] == "agent_hangup"
    # no AMI Setvar was possible: the dialplan's FastAGI status request told it
    assert "completed by agent default" in r.asterisk.log_text()
    assert r.fallback_reasons() == []
    await asyncio.to_thread(r.asterisk.wait_for_no_channels, 5)


@audiosocket_only
async def test_call_over_max_calls_reaches_the_fallback(
    rig: StartRig, softphone: MakePhone
) -> None:
    r = await rig(Scenario(greeting=GREETING), extra_yaml="limits: {max_calls: 0}")
    result = await softphone().acall(harness.EXT_AGENT_DEFAULT, None, duration=20.0)
    assert result.established, result.log
    assert result.ended_by_remote and result.duration is not None and result.duration < 12.0
    assert result.recording is not None
    assert harness.speech_present(result.recording, 0.0, 4.0, min_active=1.0)  # "I'm sorry..."
    assert r.fallback_reasons() == ["audiosocket-ended"]  # a hangup frame, not a reset
    assert r.bridge.audiosocket.refused_calls == 1 and not r.of("start")
    await asyncio.to_thread(r.asterisk.wait_for_no_channels, 5)


@audiosocket_only
async def test_shutdown_drain_lets_a_live_call_finish(
    rig: StartRig, softphone: MakePhone, tmp_path: Path
) -> None:
    r = await rig(hangup_scenario())
    wav = caller_wav(tmp_path, "That is all, thank you.", lead=2.5, trail=15.0)
    phone = asyncio.create_task(softphone().acall(harness.EXT_AGENT_DEFAULT, wav, duration=20.0))
    async with asyncio.timeout(15):
        while not r.of("start"):  # noqa: ASYNC110 - events come from the bridge's observer
            await asyncio.sleep(0.05)
    handed_over = await r.bridge.drain(timeout=20.0)  # SIGTERM's drain, from the call's start
    result = await phone
    assert handed_over == 0, "the call finished by itself during the drain"
    assert result.established and result.ended_by_remote, result.log
    assert r.of("end")[0]["reason"] == "agent_hangup"
    assert "completed by agent default" in r.asterisk.log_text()
    assert r.fallback_reasons() == []
    await asyncio.to_thread(r.asterisk.wait_for_no_channels, 5)
