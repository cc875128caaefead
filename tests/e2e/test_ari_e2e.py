"""The ARI transport end to end: real Asterisk 22, real baresip, real ARI, RTP and websocket.

A phone (6001) dials 200, which runs ``Stasis(agi-bridge,default,dnid=...)``. The
transport (agi_bridge.transports.ari) answers, bridges the channel with an externalMedia
channel and hands a test call function the ports. That function is a plain echo: it
sends the caller's own audio back through ``send_frame`` on 20 ms deadlines, presses keys
through the channel control and releases the call with a chosen outcome. What the phone
heard is recorded by baresip; what Asterisk sent to it is captured with tshark. Every
test runs for both media modes (externalMedia RTP and chan_websocket).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agi_bridge.call.ports import (
    CallerAudio,
    CallerDtmf,
    CallIdentity,
    ChannelControl,
    MediaEnded,
    MediaFormat,
    MediaPort,
    Outcome,
)
from agi_bridge.config import load_text
from agi_bridge.protocol import ari as ari_events
from agi_bridge.transports.ari import AriTransport
from tests.e2e import harness
from tests.e2e.harness import Asterisk, RtpCapture, Softphone

pytestmark = pytest.mark.e2e

MakePhone = Callable[..., Softphone]
StartCapture = Callable[..., RtpCapture]
MEDIA_MODES = ["rtp", "websocket"]
SILENCE = b"\xff" * 160  # µ-law silence


@dataclass
class Script:
    """What the echo call does besides echoing: keys to press, when to release."""

    dtmf: str = ""
    dtmf_at_s: float = 3.0
    release_at_s: float | None = None
    outcome: Outcome = Outcome.COMPLETED


@dataclass
class EchoCalls:
    """A start_call for the transport: echo the caller, then follow the script."""

    script: Script
    identities: list[CallIdentity] = field(default_factory=list)
    digits_in: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    frames_sent: int = 0
    audio_frames_in: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(
        self, identity: CallIdentity, port: MediaPort, control: ChannelControl
    ) -> None:
        self.identities.append(identity)
        self.started.set()
        assert port.format is MediaFormat.ULAW
        backlog: deque[bytes] = deque(maxlen=250)
        pending = b""
        done = asyncio.Event()

        async def read() -> None:
            nonlocal pending
            while True:
                for event in await port.receive():
                    if isinstance(event, CallerAudio):
                        self.audio_frames_in += 1
                        pending += event.data
                        while len(pending) >= 160:
                            backlog.append(pending[:160])
                            pending = pending[160:]
                    elif isinstance(event, CallerDtmf):
                        self.digits_in.append(event.digit)
                    elif isinstance(event, MediaEnded):
                        self.ended.append(event.detail)
                        done.set()
                        return

        async def write() -> None:
            t0 = time.monotonic()
            n = 0
            while not done.is_set():
                n += 1
                await asyncio.sleep(max(0.0, t0 + n * 0.02 - time.monotonic()))
                if backlog:
                    port.send_frame(backlog.popleft())
                elif port.needs_silence:
                    port.send_frame(SILENCE)
                else:
                    continue
                self.frames_sent += 1

        async def act() -> None:
            await asyncio.sleep(self.script.dtmf_at_s)
            for digit in self.script.dtmf:
                await control.send_dtmf(digit, 120)
                await asyncio.sleep(0.2)
            if self.script.release_at_s is not None:
                await asyncio.sleep(max(0.0, self.script.release_at_s - self.script.dtmf_at_s))
                await control.release(self.script.outcome)
            await done.wait()

        try:
            async with asyncio.timeout(40):
                async with asyncio.TaskGroup() as tasks:
                    reader = tasks.create_task(read())
                    writer = tasks.create_task(write())
                    actor = tasks.create_task(act())
                    await done.wait()
                    for task in (reader, writer, actor):
                        task.cancel()
        finally:
            await port.close()


StartTransport = Callable[..., Awaitable[tuple[AriTransport, EchoCalls]]]


@pytest.fixture
async def ari_rig(asterisk: Asterisk, tmp_path: Path) -> AsyncIterator[StartTransport]:
    started: list[AriTransport] = []

    async def start(media: str, script: Script | None = None) -> tuple[AriTransport, EchoCalls]:
        password = tmp_path / "ari-password"
        password.write_text(harness.ARI_TEST_PASSWORD + "\n")
        cfg = load_text(
            f"""
ari: {{enabled: true, url: "{harness.ARI_URL}", username: {harness.ARI_USER},
      password_file: "{password}", media: {media}}}
listen: {{http: ""}}
records: {{enabled: false}}
""",
            "e2e-ari.yaml",
        )
        calls = EchoCalls(script or Script())
        transport = AriTransport(cfg, calls)
        await transport.start()
        started.append(transport)
        return transport, calls

    yield start
    for transport in started:
        await transport.close()


def leftovers() -> tuple[list[str], list[str]]:
    """Bridges and channels Asterisk still has (all of them: the rig runs nothing else)."""
    bridges = [b["id"] for b in harness.ari_request("GET", "/bridges")]
    channels = [c["name"] for c in harness.ari_request("GET", "/channels")]
    return bridges, channels


async def wait_no_leftovers(timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        bridges, channels = await asyncio.to_thread(leftovers)
        if not bridges and not channels:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"leaked: bridges {bridges}, channels {channels}")
        await asyncio.sleep(0.2)


def fallback_reasons(asterisk: Asterisk) -> list[str]:
    rx = re.compile(r"agi-bridge: fallback for \S+ agent \S+ reason (\S+)$")
    return [m[1] for m in map(rx.search, asterisk.log_text().splitlines()) if m]


async def test_the_app_registers_and_hears_only_its_own_channels(
    asterisk: Asterisk, ari_rig: StartTransport, softphone: MakePhone, speech_wav: Path
) -> None:
    transport, calls = await ari_rig("rtp")
    apps = await asyncio.to_thread(harness.ari_request, "GET", "/applications")
    assert [a["name"] for a in apps] == ["agi-bridge"]
    assert "subscribeAll=false" in transport.client.events_url
    seen: list[ari_events.AriEvent] = []
    handler = transport.client._on_event

    def record(event: ari_events.AriEvent) -> None:
        seen.append(event)
        handler(event)

    transport.client._on_event = record
    # a call that never enters Stasis (the echo test, 600): no event reaches the bridge
    result = await softphone().acall(harness.EXT_ECHO, speech_wav, duration=3.0)
    assert result.established, result.log
    assert seen == []
    assert calls.identities == []


async def test_a_second_websocket_for_the_app_takes_it_and_the_first_stops_loudly(
    asterisk: Asterisk, ari_rig: StartTransport, caplog: pytest.LogCaptureFixture
) -> None:
    """Asterisk keeps one websocket per application (the newer wins): a second bridge
    with the same ari.app takes it, and the first one says so and does not take it back
    (two bridges taking turns would each lose the events of the other's live calls)."""
    first, _ = await ari_rig("rtp")
    second, _ = await ari_rig("rtp")
    assert second.client.connected.is_set()
    async with asyncio.timeout(5):
        while not first.client.replaced:  # noqa: ASYNC110 - set by the client's reader
            await asyncio.sleep(0.05)
    assert "taken over by another websocket" in caplog.text
    await asyncio.sleep(1.5)  # several reconnect backoffs: the first must stay away
    assert first.client.connections == 1 and not first.client.connected.is_set()
    assert second.client.connections == 1 and not second.client.replaced
    apps = await asyncio.to_thread(harness.ari_request, "GET", "/applications")
    assert [a["name"] for a in apps] == ["agi-bridge"]


@pytest.mark.parametrize("media", MEDIA_MODES)
async def test_echo_dtmf_and_completed_release(
    media: str,
    asterisk: Asterisk,
    ari_rig: StartTransport,
    softphone: MakePhone,
    rtp_capture: StartCapture,
    speech_wav: Path,
) -> None:
    transport, calls = await ari_rig(
        media, Script(dtmf="1#", dtmf_at_s=4.5, release_at_s=6.5, outcome=Outcome.COMPLETED)
    )
    capture = rtp_capture()
    phone = softphone()
    result = await phone.acall(harness.EXT_ARI_DEFAULT, speech_wav, duration=15.0)
    packets = capture.stop()
    assert result.established, result.log
    # the identity came from StasisStart
    assert len(calls.identities) == 1
    identity = calls.identities[0]
    assert identity.transport == f"ari-{media}"
    assert identity.channel.startswith("PJSIP/6001-")
    assert identity.caller_id == "6001"
    assert identity.dnid == harness.EXT_ARI_DEFAULT
    assert identity.agent == "default"
    assert identity.variables == {"dnid": harness.EXT_ARI_DEFAULT}
    # the caller's audio came in, and the echo of it reached the phone
    assert calls.audio_frames_in > 100
    assert result.recording is not None
    assert harness.speech_present(result.recording, 0.5, 5.0, min_active=1.0)
    # the digits went out as RFC 4733 events from Asterisk to the phone
    assert harness.dtmf_digits(harness.from_asterisk(packets)) == ["1", "#"]
    # release(COMPLETED): the dialplan after Stasis() saw "completed" and hung up
    assert result.ended_by_remote, "Asterisk hung up after the release"
    assert result.duration is not None and result.duration < 12.0
    log = await asyncio.to_thread(asterisk.log_text)
    assert "completed by agent default over ARI" in log
    assert fallback_reasons(asterisk) == []
    await wait_no_leftovers()
    assert not transport.calls


@pytest.mark.parametrize("media", MEDIA_MODES)
async def test_failed_release_runs_the_fallback(
    media: str, asterisk: Asterisk, ari_rig: StartTransport, softphone: MakePhone, speech_wav: Path
) -> None:
    await ari_rig(media, Script(dtmf_at_s=1.5, release_at_s=2.0, outcome=Outcome.FAILED))
    result = await softphone().acall(harness.EXT_ARI_DEFAULT, speech_wav, duration=8.0)
    assert result.established, result.log
    assert fallback_reasons(asterisk) == ["stasis-SUCCESS-failed"]
    await wait_no_leftovers(12.0)


async def test_stasis_without_the_bridge_falls_back_at_once(
    asterisk: Asterisk, softphone: MakePhone, speech_wav: Path
) -> None:
    result = await softphone().acall(harness.EXT_ARI_DEFAULT, speech_wav, duration=4.0)
    assert result.established, result.log
    assert fallback_reasons(asterisk) == ["stasis-FAILED-nostatus"]
    # Stasis() failed at once: the fallback started within a second of entering it
    log = asterisk.log_text()
    entered = log_time(log, r"to agent default over ARI")
    fallback = log_time(log, r"agi-bridge: fallback for")
    assert 0.0 <= fallback - entered < 1.0


def log_time(log: str, pattern: str) -> float:
    """Seconds of the day of the first ``full`` log line matching ``pattern``."""
    for line in log.splitlines():
        if re.search(pattern, line):
            m = re.match(r"\[\d{4}-\d\d-\d\d (\d\d):(\d\d):(\d\d\.\d+)\]", line)
            assert m, line
            return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    raise AssertionError(f"{pattern!r} not in the Asterisk log")


@pytest.mark.parametrize("media", MEDIA_MODES)
async def test_events_websocket_drop_keeps_the_call_and_leaks_nothing(
    media: str, asterisk: Asterisk, ari_rig: StartTransport, softphone: MakePhone, speech_wav: Path
) -> None:
    transport, calls = await ari_rig(
        media, Script(dtmf_at_s=5.0, release_at_s=5.0, outcome=Outcome.COMPLETED)
    )
    phone = softphone()
    call = asyncio.create_task(phone.acall(harness.EXT_ARI_DEFAULT, speech_wav, duration=15.0))
    async with asyncio.timeout(10):
        await calls.started.wait()
    await asyncio.sleep(1.0)
    await transport.client.drop_events_connection()
    async with asyncio.timeout(10):
        while transport.client.connections < 2:  # noqa: ASYNC110 - a counter, no event
            await asyncio.sleep(0.05)
    result = await call
    assert result.established, result.log
    # the call lived through the reconnect and was completed by the release
    assert result.ended_by_remote
    assert "completed by agent default over ARI" in asterisk.log_text()
    # The release ends the call from Asterisk's side: the caller's StasisEnd, the externalMedia
    # channel's end, or (chan_websocket) the media socket's close. Their order is Asterisk's.
    ends = ("channel left Stasis", "externalMedia channel gone", "chan_websocket closed")
    assert calls.ended and calls.ended[0].startswith(ends), calls.ended
    # The new events connection carries StasisStart: a second call reaches the transport.
    again = await softphone().acall(harness.EXT_ARI_DEFAULT, speech_wav, duration=3.0)
    assert again.established, again.log
    assert len(calls.identities) == 2
    await wait_no_leftovers()


@pytest.mark.parametrize("media", MEDIA_MODES)
async def test_caller_hangs_up_while_events_are_down_and_nothing_leaks(
    media: str, asterisk: Asterisk, ari_rig: StartTransport, softphone: MakePhone, speech_wav: Path
) -> None:
    transport, calls = await ari_rig(media, Script(dtmf_at_s=60.0))
    phone = softphone()
    call = asyncio.create_task(phone.acall(harness.EXT_ARI_DEFAULT, speech_wav, duration=4.0))
    async with asyncio.timeout(10):
        await calls.started.wait()
    transport.client.backoff_initial_s = 6.0  # stay away until the phone has hung up
    await transport.client.drop_events_connection()
    result = await call
    assert result.established, result.log
    assert not result.ended_by_remote  # the phone hung up, during the outage
    assert transport.client.connections == 1
    async with asyncio.timeout(15):
        while transport.client.connections < 2:  # noqa: ASYNC110 - a counter, no event
            await asyncio.sleep(0.05)
    await wait_no_leftovers()
    assert calls.ended


async def test_check_connect_reaches_ari(asterisk: Asterisk, tmp_path: Path) -> None:
    from agi_bridge.check import check_ari

    password = tmp_path / "ari-password"
    lines: list[str] = []
    for secret in (harness.ARI_TEST_PASSWORD, "wrong-password"):
        password.write_text(secret + "\n")
        cfg = load_text(
            f'ari: {{enabled: true, url: "{harness.ARI_URL}", password_file: "{password}"}}\n',
            "check.yaml",
        )
        ok = await check_ari(cfg, lines.append)
        assert ok is (secret == harness.ARI_TEST_PASSWORD)
    # Debian's version string: 22.10.1+dfsg+...
    assert re.fullmatch(
        rf"OK   ari {harness.ARI_URL}: Asterisk 22\.\S+, user agi_bridge, application agi-bridge",
        lines[0],
    ), lines[0]
    assert lines[1].startswith(f"FAIL ari {harness.ARI_URL}: ARI GET /asterisk/info: 401")
    assert "wrong-password" not in "\n".join(lines)
