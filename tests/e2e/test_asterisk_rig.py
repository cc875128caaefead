"""Sanity tests of the e2e rig against the real Asterisk 22 with asterisk-config/.

They check the configuration the project ships (boot, SIP, RTP, AMI user, dialplan
contract of the agent path, its fallbacks) and the harness itself, without agi_bridge:
where the bridge is needed, harness.FakeBridge stands in for it.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.e2e import harness
from tests.e2e.harness import AmiClient, AmiError, Asterisk, FakeBridge, RtpCapture, Softphone

pytestmark = pytest.mark.e2e

MakeAsterisk = Callable[..., Asterisk]
MakePhone = Callable[..., Softphone]
StartCapture = Callable[..., RtpCapture]


def bridge_ports() -> dict[str, str]:
    """Free ports for a FakeBridge, passed to Asterisk through the dialplan's env override."""
    return {
        "AGI_BRIDGE_AGI_PORT": str(harness.free_port()),
        "AGI_BRIDGE_AUDIOSOCKET_PORT": str(harness.free_port()),
    }


def fallback_lines(asterisk: Asterisk) -> list[tuple[str, str]]:
    """(agent, reason) of each fallback the dialplan logged (its Log(WARNING,...) line)."""
    rx = re.compile(r" WARNING\[.*agi-bridge: fallback for \S+ agent (\S+) reason (\S+)$")
    return [(m[1], m[2]) for m in map(rx.search, asterisk.log_text().splitlines()) if m]


# --- boot and configuration -----------------------------------------------------------------


def test_asterisk_boots_quietly_with_shipped_config(asterisk: Asterisk) -> None:
    modules = asterisk.cli("module show")
    for module in (
        "chan_pjsip.so",
        "res_agi.so",
        "app_audiosocket.so",
        "res_audiosocket.so",
        "chan_audiosocket.so",
        "app_exec.so",
        "app_senddtmf.so",
        "app_echo.so",
        "func_env.so",
        "codec_ulaw.so",
        "format_gsm.so",
        "res_rtp_asterisk.so",
    ):
        assert module in modules, f"{module} not loaded"

    endpoints = asterisk.cli("pjsip show endpoints")
    assert "6001/6001" in endpoints and "6002/6002" in endpoints
    assert "127.0.0.1:5060" in asterisk.cli("pjsip show transports")
    rtp = asterisk.cli("rtp show settings")
    assert re.search(r"Port start:\s+10000", rtp) and re.search(r"Port end:\s+10099", rtp)

    dialplan = asterisk.cli("dialplan show agi-bridge-phones")
    for exten in ("'100'", "'101'", "'600'", "'601'"):
        assert exten in dialplan
    for context in ("agi-bridge-agent", "agi-bridge-fallback", "agi-bridge-settings"):
        assert f"Context '{context}'" in asterisk.cli(f"dialplan show {context}")

    user = asterisk.cli("manager show user agi_bridge")
    assert re.search(r"read perm: call,user,dtmf", user)
    assert re.search(r"write perm: call,originate", user)

    # Quiet boot: no warnings or errors at all in the messages log.
    problems = [
        line
        for line in asterisk.log_text("messages").splitlines()
        if re.search(r"\] (WARNING|ERROR)\[", line)
    ]
    assert problems == []


# --- calls through SIP and RTP ----------------------------------------------------------------


def test_echo_call_returns_the_callers_speech(
    asterisk: Asterisk, softphone: MakePhone, speech_wav: Path
) -> None:
    speech_end = harness.wav_duration(speech_wav) - 1.0
    result = softphone().call(harness.EXT_ECHO, speech_wav, duration=speech_end + 2.5)
    assert result.established, result.log
    assert result.ended and not result.ended_by_remote, result.log  # the phone hung up itself
    assert result.recording is not None and result.sent is not None
    assert harness.speech_present(result.sent, 0.5, speech_end, min_active=1.0)
    # What the phone heard is its own speech, echoed, then the silence it sent.
    assert harness.speech_present(result.recording, 0.5, speech_end + 0.5, min_active=1.0)
    assert harness.active_seconds(result.recording, speech_end + 0.7) < 0.1
    asterisk.wait_for_no_channels(5)


def test_phone_sends_dtmf_and_hangs_up(
    asterisk: Asterisk, softphone: MakePhone, rtp_capture: StartCapture
) -> None:
    capture = rtp_capture()
    phone = softphone().start(harness.EXT_ECHO, None, duration=20.0)
    assert phone.wait_established(10), phone.log
    phone.send_dtmf("5*9")
    asterisk.wait_for_log(r"DTMF end '9' received on PJSIP/6001-", 5)
    phone.hangup()
    assert phone.wait_ended(5), phone.log
    result = phone.stop()
    assert result.ended and not result.ended_by_remote, result.log
    assert result.duration is not None and result.duration < 5.0
    assert phone.received_dtmf == "5*9"  # Echo() returns DTMF too
    to_asterisk = [p for p in capture.stop() if p.dst_port <= harness.ASTERISK_RTP_PORTS[1]]
    assert harness.dtmf_digits(to_asterisk) == ["5", "*", "9"]
    asterisk.wait_for_no_channels(5)


def test_far_end_hangup_is_reported(asterisk: Asterisk, softphone: MakePhone) -> None:
    result = softphone().call(harness.EXT_HELLO, None, duration=15.0)
    assert result.established, result.log
    assert result.ended_by_remote, result.log
    assert result.duration is not None and result.duration < 6.0
    assert result.recording is not None
    assert harness.speech_present(result.recording)  # "Hello world"


# --- AMI ------------------------------------------------------------------------------------


async def test_ami_secret_comes_from_the_override_file(asterisk: Asterisk) -> None:
    client = await AmiClient.connect(secret=harness.AMI_TEST_SECRET)
    assert client.banner.startswith("Asterisk Call Manager/")
    await client.close()
    with pytest.raises(AmiError, match="Authentication failed"):
        await AmiClient.connect(secret=harness.AMI_DEFAULT_SECRET)


async def test_ami_default_secret_without_override(asterisk_factory: MakeAsterisk) -> None:
    asterisk_factory(ami_secret=None).start()
    client = await AmiClient.connect(secret=harness.AMI_DEFAULT_SECRET)
    await client.close()


async def test_ami_user_has_no_system_or_command_privileges(ami: AmiClient) -> None:
    denied = await ami.action("Command", Command="core show version", check=False)
    assert denied["Response"] == "Error" and "Permission denied" in denied.get("Message", "")
    denied = await ami.action("Reload", check=False)
    assert denied["Response"] == "Error"


async def test_playdtmf_reaches_the_phone_as_rfc4733_events(
    asterisk: Asterisk,
    ami: AmiClient,
    softphone: MakePhone,
    rtp_capture: StartCapture,
    speech_wav: Path,
) -> None:
    capture = rtp_capture()
    phone = softphone().start(harness.EXT_ECHO, speech_wav, duration=6.0)
    assert await phone.await_established(10), phone.log
    channel = await asyncio.to_thread(asterisk.wait_for_channel, "PJSIP/6001-", 10)
    await asyncio.sleep(1.0)
    for digit in ("1", "#"):
        resp = await ami.action("PlayDTMF", Channel=channel, Digit=digit, Duration="250")
        assert resp["Message"] == "DTMF successfully queued"
        await asyncio.sleep(0.6)
    await ami.action("Setvar", Channel=channel, Variable="E2E_PROBE", Value="42")
    value = await ami.action("Getvar", Channel=channel, Variable="E2E_PROBE")
    assert value["Value"] == "42"
    assert await phone.await_ended(15), phone.log
    phone.stop()
    packets = capture.stop()

    to_phone = harness.from_asterisk(packets)
    assert harness.dtmf_digits(to_phone) == ["1", "#"]
    ends = {p.event_id for p in to_phone if p.payload_type == 101 and p.event_end}
    assert ends == {1, 11}
    # Echoed audio leaves Asterisk every 20 ms.
    intervals = harness.audio_intervals_ms(to_phone)
    assert len(intervals) > 100
    assert 19.0 <= float(np.median(intervals)) <= 21.0


# --- the agent path (dialplan contract) and its fallbacks --------------------------------------


def test_agent_extension_with_bridge_down_plays_fallback_and_hangs_up(
    asterisk: Asterisk, softphone: MakePhone
) -> None:
    if harness.port_in_use(harness.AGI_PORT):
        pytest.fail(
            f"something listens on 127.0.0.1:{harness.AGI_PORT}; this test needs the "
            "bridge down (stop the local agi_bridge)"
        )
    result = softphone().call(harness.EXT_AGENT_DEFAULT, None, duration=20.0)
    assert result.established, result.log
    assert result.ended_by_remote, result.log  # Asterisk hung up after the prompts
    assert result.duration is not None and result.duration < 10.0
    assert result.recording is not None
    assert harness.speech_present(result.recording, 0.0, 3.0, min_active=1.0)  # "I'm sorry..."
    log = asterisk.log_text()
    assert "Connecting to '127.0.0.1:4573' failed" in log  # the default bridge address
    assert fallback_lines(asterisk) == [("default", "agi-FAILURE")]
    asterisk.wait_for_no_channels(5)


def test_fallback_offers_the_operator_when_configured(
    asterisk_factory: MakeAsterisk, softphone: MakePhone, speech_wav: Path
) -> None:
    env = bridge_ports()  # nothing listens there: the bridge is down
    env["AGI_BRIDGE_OPERATOR"] = "PJSIP/6002"
    asterisk = asterisk_factory(env=env).start()
    operator = softphone("6002", register=True).start(None, speech_wav, duration=3.0)
    assert operator.wait_registered(10), operator.log
    result = softphone("6001").call(harness.EXT_AGENT_DEFAULT, None, duration=30.0)
    operator_result = operator.stop()
    assert result.established, result.log
    assert operator_result.established, operator_result.log  # the operator's phone answered
    assert result.ended_by_remote, result.log  # the operator hung up: the call is over
    assert result.recording is not None
    assert harness.speech_present(result.recording, 0.0, 3.0, min_active=1.0)  # prompts
    assert fallback_lines(asterisk) == [("default", "agi-FAILURE")]
    assert 'Dial("PJSIP/6001-' in asterisk.log_text()
    asterisk.wait_for_no_channels(5)


def test_agent_extension_with_audiosocket_refused_falls_back(
    asterisk_factory: MakeAsterisk, softphone: MakePhone
) -> None:
    ports = bridge_ports()
    asterisk = asterisk_factory(env=ports).start()
    with FakeBridge(int(ports["AGI_BRIDGE_AGI_PORT"]), None) as bridge:
        result = softphone().call(harness.EXT_AGENT_IVR, None, duration=20.0)
    assert result.established, result.log
    assert bridge.errors == []
    assert len(bridge.sessions) == 1
    env = bridge.sessions[0].agi_env
    assert env["agi_network_script"] == "agent"
    assert env["agi_arg_1"] == "ivr"
    assert env["agi_channel"].startswith("PJSIP/6001-")
    assert env["agi_callerid"] == "6001"
    assert result.ended_by_remote and result.duration is not None and result.duration < 10.0
    assert result.recording is not None and harness.speech_present(result.recording, 0.0, 3.0)
    assert fallback_lines(asterisk) == [("ivr", "audiosocket-FAILED")]
    asterisk.wait_for_no_channels(5)


def test_agent_extension_completed_by_the_bridge_hangs_up_without_fallback(
    asterisk_factory: MakeAsterisk,
    softphone: MakePhone,
    rtp_capture: StartCapture,
    speech_wav: Path,
) -> None:
    ports = bridge_ports()
    asterisk = asterisk_factory(env=ports).start()
    capture = rtp_capture()
    play = harness.wav_to_slin(speech_wav)
    with FakeBridge(
        int(ports["AGI_BRIDGE_AGI_PORT"]),
        int(ports["AGI_BRIDGE_AUDIOSOCKET_PORT"]),
        play=play,
        hold=len(play) / 16000 + 0.5,
        status="completed",
    ) as bridge:
        result = softphone().call(harness.EXT_AGENT_DEFAULT, speech_wav, duration=20.0)
    packets = capture.stop()

    assert result.established, result.log
    assert bridge.errors == []
    (session,) = bridge.sessions
    assert session.agi_env["agi_arg_1"] == "default"
    assert session.audiosocket_uuid == session.uuid  # AudioSocket got AGI_BRIDGE_UUID
    assert session.received_audio_bytes > 8000 * 2  # > 1 s of the caller's audio
    assert session.ended == "hangup-frame"

    assert result.ended_by_remote, result.log
    assert result.duration is not None and result.duration < len(play) / 16000 + 4.0
    assert result.recording is not None
    assert harness.speech_present(result.recording, 0.5, 4.0, min_active=1.0)  # the "agent"
    log = asterisk.log_text()
    assert "agi-bridge: PJSIP/6001-" in log and "completed by agent default" in log
    assert fallback_lines(asterisk) == []
    assert re.search(r"hung up \(16\) agent default status completed", log)
    # The paced frames leave Asterisk as RTP every 20 ms.
    intervals = harness.audio_intervals_ms(harness.from_asterisk(packets))
    assert 19.0 <= float(np.median(intervals)) <= 21.0
    asterisk.wait_for_no_channels(5)


def test_caller_dtmf_reaches_the_bridge_over_audiosocket(
    asterisk_factory: MakeAsterisk, softphone: MakePhone
) -> None:
    ports = bridge_ports()
    asterisk_factory(env=ports).start()
    with FakeBridge(
        int(ports["AGI_BRIDGE_AGI_PORT"]),
        int(ports["AGI_BRIDGE_AUDIOSOCKET_PORT"]),
        hold=4.0,
        status="completed",
    ) as bridge:
        phone = softphone().start(harness.EXT_AGENT_DEFAULT, None, duration=20.0)
        assert phone.wait_established(10), phone.log
        deadline = time.monotonic() + 5
        while not (bridge.sessions and bridge.sessions[0].audiosocket_uuid):
            assert time.monotonic() < deadline, "AudioSocket session did not start"
            time.sleep(0.05)
        phone.send_dtmf("42#")
        assert phone.wait_ended(10), phone.log
    assert bridge.errors == []
    assert bridge.sessions[0].received_dtmf == "42#"  # AudioSocket DTMF frames (type 0x03)
    assert phone.stop().ended_by_remote


def test_agent_session_ended_without_status_falls_back(
    asterisk_factory: MakeAsterisk, softphone: MakePhone
) -> None:
    ports = bridge_ports()
    asterisk = asterisk_factory(env=ports).start()
    with FakeBridge(
        int(ports["AGI_BRIDGE_AGI_PORT"]),
        int(ports["AGI_BRIDGE_AUDIOSOCKET_PORT"]),
        hold=1.0,
        status=None,
    ) as bridge:
        result = softphone().call(harness.EXT_AGENT_DEFAULT, None, duration=20.0)
    assert result.established, result.log
    assert bridge.errors == []
    assert result.ended_by_remote, result.log
    assert fallback_lines(asterisk) == [("default", "audiosocket-ended")]


def test_agent_without_uuid_falls_back(
    asterisk_factory: MakeAsterisk, softphone: MakePhone
) -> None:
    ports = bridge_ports()
    asterisk = asterisk_factory(env=ports).start()
    with FakeBridge(int(ports["AGI_BRIDGE_AGI_PORT"]), None, set_uuid=False) as bridge:
        result = softphone().call(harness.EXT_AGENT_DEFAULT, None, duration=20.0)
    assert result.established, result.log
    assert bridge.errors == [] and len(bridge.sessions) == 1
    assert result.ended_by_remote, result.log
    assert fallback_lines(asterisk) == [("default", "agi-no-uuid")]


# --- the harness itself ---------------------------------------------------------------------


def test_audio_helpers(tmp_path: Path) -> None:
    rate = harness.SAMPLE_RATE
    t = np.arange(rate * 2) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    tone[: rate // 2] = 0.0  # 0.5 s of silence first
    path = harness.write_wav(tmp_path / "tone.wav", tone)
    levels = harness.window_dbfs(harness.read_wav(path)[0])
    assert len(levels) == 100
    assert levels[:25].max() < -100 and abs(levels[50] - (-9.03)) < 0.2
    assert not harness.speech_present(path, 0.0, 0.5)
    assert harness.speech_present(path, 0.5, 2.0, min_active=1.4)
    speech = harness.espeak_wav("testing one two three", tmp_path / "s.wav", lead_silence=1.0)
    assert harness.read_wav(speech)[1] == 8000
    assert not harness.speech_present(speech, 0.0, 0.9)
    assert harness.speech_present(speech, 1.0)


def test_sip_port_is_free_after_asterisk_stops(asterisk_factory: MakeAsterisk) -> None:
    instance = asterisk_factory().start()
    pid = instance.proc.pid if instance.proc else None
    instance.stop()
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert not harness.port_in_use(harness.SIP_PORT, socket.SOCK_DGRAM)
    assert not harness.port_in_use(harness.AMI_PORT)
    assert not instance.run_dir.exists()
    assert harness.pids_inside(instance.root) == []


def test_proc_is_unmounted_when_the_last_user_stops(asterisk_factory: MakeAsterisk) -> None:
    instance = asterisk_factory(mount_proc=True).start()
    assert harness.mounts_under(instance.root / "proc")
    assert "fully booted" in instance.cli("core waitfullybooted")
    instance.stop()
    assert harness.mounts_under(instance.root) == []
