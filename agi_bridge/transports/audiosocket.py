"""The first way in: FastAGI (who is calling) + AudioSocket (audio) + AMI (channel control).

Dialplan: ``AGI(agi://bridge/AGENT)`` registers the call under a UUID, then
``AudioSocket(${UUID},bridge:9092)`` connects. The connection's first frame is that UUID;
the registration gives the channel name AMI actions need. AudioSocket carries slin16 and
Asterisk does not pace what it receives (REFERENCE §2), so the Call paces every frame,
silence included (``needs_silence``): the app hangs up after 2 s without a frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from agi_bridge import audio, ticker
from agi_bridge.asterisk.admission import Throttle
from agi_bridge.call.ports import (
    CallerAudio,
    CallerDtmf,
    CallIdentity,
    ChannelControl,
    MediaEnded,
    MediaEvent,
    MediaFormat,
    MediaPort,
    Outcome,
)
from agi_bridge.errors import AmiError, AudioSocketError
from agi_bridge.protocol import audiosocket as asock

log = logging.getLogger(__name__)
_throttled = Throttle(log)

STATUS_VARIABLE = "AGI_BRIDGE_STATUS"
# Asterisk reads AudioSocket continuously; this much unsent output means it stopped.
MAX_WRITE_BACKLOG = 64 * 1024
READ_BYTES = 8192
UUID_BYTES = 16
# Asterisk sends a slin frame every 20 ms and the Call sends caller audio to the model 40 ms
# at a time, so waking up for every frame only buys a second wake-up per batch. The kernel
# holds the first frame until the second has arrived (SO_RCVLOWAT: epoll reports the
# socket readable from this many bytes on): half the event-loop wake-ups and reads per
# call, and no added latency, since the batch leaves when its second frame arrives.
WAKE_BYTES = 2 * (asock.HEADER_SIZE + audio.SLIN_FRAME_BYTES)
# After this long without a byte (a Local channel waiting in WaitExten() sends no audio),
# every byte wakes the loop again: a lone key press or last frame is not held back.
QUIET_S = 0.06

StartCall = Callable[[CallIdentity, MediaPort, ChannelControl], Awaitable[None]]


class Registration(Protocol):
    """What the FastAGI registration of a call tells (asterisk.agi.CallMetadata)."""

    @property
    def channel(self) -> str: ...

    @property
    def caller_id(self) -> str: ...

    @property
    def caller_name(self) -> str: ...

    @property
    def dnid(self) -> str: ...

    @property
    def agent(self) -> str | None: ...


class CallAmi(Protocol):
    """The AMI actions a call uses (implemented by asterisk.ami.AmiClient)."""

    @property
    def connected(self) -> bool: ...

    async def play_dtmf(self, channel: str, digit: str, duration_ms: int) -> None: ...

    async def setvar(self, channel: str, variable: str, value: str) -> None: ...

    async def redirect(self, channel: str, context: str, exten: str, priority: int = 1) -> None: ...


class AudioSocketMedia:
    """The media port of one AudioSocket connection."""

    format = MediaFormat.SLIN16
    needs_silence = True

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = asock.AudioSocketParser()
        self._resample_state: audio.ResampleState = None
        self._hangup_sent = False
        self.call_id = ""
        self._sock: socket.socket | None = None  # set by hold_frames
        self._holding = False  # SO_RCVLOWAT is WAKE_BYTES (see hold_frames)
        self._last_data = 0.0
        self._ticker: ticker.Ticker | None = None
        self._tick_key = 0

    def hold_frames(self) -> bool:
        """Wake up for two frames at a time (WAKE_BYTES) from now on; False where the
        socket option is missing (not Linux)."""
        self._sock = self._writer.get_extra_info("socket")
        if not self._set_wake_bytes(WAKE_BYTES):
            return False
        self._holding = True
        self._last_data = time.monotonic()
        self._ticker = ticker.shared()
        self._tick_key = self._ticker.subscribe(self._check_quiet)
        return True

    def _set_wake_bytes(self, count: int) -> bool:
        if self._sock is None:
            return False
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, count)
        except (OSError, AttributeError):  # closed, or no such option (not Linux)
            return False
        return True

    def _check_quiet(self, now: float) -> None:
        """On the shared 20 ms tick: after QUIET_S without data, wake up for every byte
        (lowering the mark makes the kernel report what it holds at once)."""
        if self._holding and now - self._last_data >= QUIET_S:
            self._holding = False
            self._set_wake_bytes(1)

    def stop_holding(self) -> None:
        """Leave the shared tick (idempotent)."""
        if self._ticker is not None:
            self._ticker.unsubscribe(self._tick_key)
            self._ticker = None

    async def read_uuid(self, timeout: float) -> str:
        """Read the UUID frame (always the first one); raises AudioSocketError.

        Exactly that frame is read: whatever follows it belongs to the call, so a bad
        frame right after a good UUID ends the call (recorded), not the connection."""
        try:
            async with asyncio.timeout(timeout):
                header = await self._reader.readexactly(3)
                kind, length = header[0], int.from_bytes(header[1:3], "big")
                if kind != asock.Kind.UUID or length != UUID_BYTES:
                    raise AudioSocketError(
                        f"first frame must be the UUID, got type 0x{kind:02x} length {length}"
                    )
                payload = await self._reader.readexactly(UUID_BYTES)
        except TimeoutError:
            raise AudioSocketError(f"no UUID frame within {timeout:.0f} s") from None
        except asyncio.IncompleteReadError:
            raise AudioSocketError("closed before the UUID frame") from None
        first = self._parser.feed(header + payload)[0]
        if not isinstance(first, asock.Uuid):  # pragma: no cover - the parser guarantees it
            raise AudioSocketError(f"first frame must be the UUID, got {first!r:.60}")
        self.call_id = str(first.value)
        return self.call_id

    async def receive(self) -> list[MediaEvent]:
        data = await self._reader.read(READ_BYTES)
        if not data:
            return [MediaEnded("AudioSocket closed")]
        events = self._parser.feed(data)
        out: list[MediaEvent] = []
        if self._ticker is not None:
            now = time.monotonic()
            if not self._holding and now - self._last_data < QUIET_S and events:
                # data again within QUIET_S of the last: a stream, two frames a wake-up
                self._holding = self._set_wake_bytes(WAKE_BYTES)
            self._last_data = now
        for ev in events:
            if isinstance(ev, asock.Audio):
                pcm = ev.pcm
                if ev.rate != audio.SAMPLE_RATE:
                    pcm, self._resample_state = audio.resample_to_8k(
                        pcm, ev.rate, self._resample_state
                    )
                out.append(CallerAudio(pcm))
            elif isinstance(ev, asock.Dtmf):
                out.append(CallerDtmf(ev.digit))
            elif isinstance(ev, asock.Hangup):
                out.append(MediaEnded("hangup frame"))
            elif isinstance(ev, asock.Uuid):
                log.warning("call %s: ignoring a second UUID frame %s", self.call_id, ev.value)
            elif isinstance(ev, asock.Error):
                raise AudioSocketError(f"error frame from Asterisk {ev.payload!r}")
        return out

    def send_frame(self, frame: bytes) -> None:
        writer = self._writer
        if writer.is_closing():
            return  # the caller pump sees the close and ends the call
        writer.write(asock.audio_frame(frame))
        if writer.transport.get_write_buffer_size() > MAX_WRITE_BACKLOG:
            raise AudioSocketError("Asterisk stopped reading AudioSocket (64 KiB backlog)")

    async def flush(self) -> None:
        """Nothing queued on Asterisk's side: the bridge paces every frame itself."""

    def queued_ms(self) -> int:
        return 0  # Asterisk forwards AudioSocket frames as RTP at once (REFERENCE §2)

    def hangup(self) -> None:
        """End the AudioSocket session: the dialplan continues after AudioSocket()."""
        if self._hangup_sent or self._writer.is_closing():
            return
        self._hangup_sent = True
        self._writer.write(asock.hangup_frame())

    async def close(self) -> None:
        self.stop_holding()
        self._writer.close()
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(self._writer.wait_closed(), 2)


class AmiControl:
    """Channel control over AMI, for the channel the FastAGI registration named."""

    def __init__(
        self,
        ami: CallAmi | None,
        channel: str,
        media: AudioSocketMedia,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self._ami = ami
        self._channel = channel
        self._media = media
        self._on_outcome = on_outcome

    def _target(self, what: str) -> tuple[CallAmi, str]:
        if self._ami is None:
            raise AmiError(f"{what} needs AMI, which is not configured")
        if not self._channel:
            raise AmiError("the channel of this call is unknown (no FastAGI registration)")
        return self._ami, self._channel

    async def send_dtmf(self, digit: str, duration_ms: int) -> None:
        ami, channel = self._target("DTMF")
        await ami.play_dtmf(channel, digit, duration_ms)

    async def transfer(self, context: str, exten: str, priority: int) -> None:
        # after the Redirect Asterisk takes the channel out of AudioSocket() and closes
        # the socket itself: no hangup frame, no "completed"
        ami, channel = self._target("transfer")
        await ami.redirect(channel, context, exten, priority)

    async def release(self, outcome: Outcome) -> None:
        if self._on_outcome is not None:
            # before the hangup frame: the dialplan may ask for it (FastAGI status) the
            # moment AudioSocket() returns, and AMI may be down
            self._on_outcome(outcome)
        if outcome is Outcome.COMPLETED and self._ami is not None and self._channel:
            try:
                await self._ami.setvar(self._channel, STATUS_VARIABLE, "completed")
            except AmiError as exc:
                log.warning("could not set %s over AMI: %s", STATUS_VARIABLE, exc)
        if outcome in (Outcome.COMPLETED, Outcome.FAILED):
            self._media.hangup()


async def run_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    claim: Callable[[str], Registration | None] | None,
    ami: CallAmi | None,
    uuid_timeout: float,
    start_call: StartCall,
    allow_unregistered: bool = False,
    is_live: Callable[[str], bool] = lambda call_id: False,
    record_outcome: Callable[[str, str], None] | None = None,
) -> None:
    """One AudioSocket connection: read the UUID, find its registration, run the call.

    Refused with a hangup frame (the dialplan falls back): a UUID of a call already live
    here, and, unless ``allow_unregistered``, a UUID no FastAGI request registered."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # 20 ms frames must leave at once, not wait for Nagle to batch them
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    media = AudioSocketMedia(reader, writer)
    try:
        call_id = await media.read_uuid(uuid_timeout)
    except (AudioSocketError, ConnectionError) as exc:
        _throttled(
            "dropped",
            logging.WARNING,
            "AudioSocket connection from %s dropped: %s",
            writer.get_extra_info("peername"),
            exc,
        )
        media.hangup()
        await media.close()
        return
    refusal = ""
    meta = None
    if is_live(call_id):
        refusal = "a call with this UUID is already live"
    else:
        meta = claim(call_id) if claim is not None else None
        if meta is None and not allow_unregistered:
            refusal = "no FastAGI registration (listen.audiosocket_unregistered: refuse)"
    if refusal:
        peer = writer.get_extra_info("peername")
        # one line, then a count every few seconds: a flood must not become a log flood
        _throttled(
            f"refused {refusal}",
            logging.WARNING,
            "refusing AudioSocket UUID %s from %s: %s",
            call_id,
            peer,
            refusal,
        )
        media.hangup()
        await media.close()
        return
    if meta is None:
        log.info("call %s: no FastAGI registration: default agent, no AMI tools", call_id)
    identity = CallIdentity(
        call_id=call_id,
        transport="audiosocket",
        channel=meta.channel if meta else "",
        caller_id=meta.caller_id if meta else "",
        caller_name=meta.caller_name if meta else "",
        dnid=meta.dnid if meta else "",
        agent=meta.agent if meta else None,
    )
    on_outcome = None
    if record_outcome is not None:

        def on_outcome(outcome: Outcome) -> None:
            record_outcome(call_id, outcome.value)

    control = AmiControl(ami, identity.channel, media, on_outcome)
    media.hold_frames()
    try:
        await start_call(identity, media, control)
    finally:
        media.stop_holding()  # off the shared tick, however the call ended
