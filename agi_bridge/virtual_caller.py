"""A virtual caller: plays Asterisk's side of AudioSocket over a real TCP socket.

Like Asterisk it sends the UUID frame, then one 320-byte slin frame every 20 ms (the
caller's microphone: speech where given, silence otherwise), and records every frame the
bridge sends back with its arrival time. Used by ``agi-bridge demo``, the integration
tests and the benchmark; it is not part of the call path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid as uuidlib
from collections import deque
from dataclasses import dataclass, field

from agi_bridge.audio import SLIN_FRAME_BYTES, SLIN_SILENCE_FRAME
from agi_bridge.protocol import audiosocket as asock


@dataclass
class Heard:
    """What the caller received: frame arrival times (monotonic s) and the audio."""

    times: list[float] = field(default_factory=list)
    pcm: bytearray = field(default_factory=bytearray)
    bad_sizes: list[int] = field(default_factory=list)
    hangup_at: float | None = None

    def intervals_ms(self) -> list[float]:
        return [(b - a) * 1000 for a, b in zip(self.times, self.times[1:], strict=False)]


class VirtualCaller:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        call_uuid: uuidlib.UUID | None = None,
        keep_audio: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.uuid = call_uuid or uuidlib.uuid4()
        self.heard = Heard()
        self.keep_audio = keep_audio
        self.closed = asyncio.Event()  # the bridge ended the session (hangup frame or EOF)
        self._mic: deque[bytes] = deque()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.sent_frames = 0
        self.sent_speech_at: list[float] = []  # monotonic time of each queued-speech frame

    async def __aenter__(self) -> VirtualCaller:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._writer.write(asock.uuid_frame(self.uuid))
        self._tasks = [
            asyncio.create_task(self._send_loop()),
            asyncio.create_task(self._recv_loop()),
        ]

    def say(self, pcm: bytes) -> None:
        """Queue slin16 8 kHz audio to speak (sent at real pace, 20 ms per frame)."""
        pad = (-len(pcm)) % SLIN_FRAME_BYTES
        pcm = pcm + bytes(pad)
        for i in range(0, len(pcm), SLIN_FRAME_BYTES):
            self._mic.append(pcm[i : i + SLIN_FRAME_BYTES])

    @property
    def speaking(self) -> bool:
        return bool(self._mic)

    async def wait_spoken(self) -> None:
        """Until the queued speech is sent, or the call has ended (nothing sends it then)."""
        while self._mic and not self.closed.is_set():  # noqa: ASYNC110 - drained at 20 ms/frame
            await asyncio.sleep(0.02)

    async def wait_quiet(
        self, *, quiet_ms: int = 800, after_audio: bool = False, timeout: float = 30.0
    ) -> bool:
        """Wait until the bridge has sent only silence for ``quiet_ms``; with
        ``after_audio``, only once some new (non-silent) audio has been heard first."""
        quiet = bytes(SLIN_FRAME_BYTES * (quiet_ms // 20))
        start = len(self.heard.pcm)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.closed.is_set():
            new = self.heard.pcm[start:]
            heard_audio = any(new) if after_audio else True
            if heard_audio and len(new) >= len(quiet) and new[-len(quiet) :] == quiet:
                return True
            await asyncio.sleep(0.05)
        return False

    def press(self, digit: str) -> None:
        assert self._writer is not None
        self._writer.write(asock.dtmf_frame(digit))

    def hangup(self) -> None:
        """Hang up the way Asterisk does: close the socket."""
        if self._writer is not None and not self._writer.is_closing():
            self._writer.close()

    async def _send_loop(self) -> None:
        assert self._writer is not None
        t0 = time.monotonic()
        n = 0
        while not self._writer.is_closing():
            frame = self._mic.popleft() if self._mic else SLIN_SILENCE_FRAME
            if frame is not SLIN_SILENCE_FRAME:
                self.sent_speech_at.append(time.monotonic())
            self._writer.write(asock.audio_frame(frame))
            self.sent_frames += 1
            n += 1
            await asyncio.sleep(max(0.0, t0 + n * 0.02 - time.monotonic()))

    async def _recv_loop(self) -> None:
        assert self._reader is not None
        parser = asock.AudioSocketParser()
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                now = time.monotonic()
                for ev in parser.feed(data):
                    if isinstance(ev, asock.Audio):
                        self.heard.times.append(now)
                        if len(ev.pcm) != SLIN_FRAME_BYTES:
                            self.heard.bad_sizes.append(len(ev.pcm))
                        if self.keep_audio:
                            self.heard.pcm += ev.pcm
                    elif isinstance(ev, asock.Hangup):
                        self.heard.hangup_at = now
                        return
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed.set()
            if self._writer is not None:
                self._writer.close()

    async def close(self) -> None:
        self.hangup()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await task


def espeak(text: str, *, voice: str = "en-us", wpm: int = 150) -> bytes:
    """Speak ``text`` with espeak-ng and return slin16 8 kHz mono (raises if not installed)."""
    import io
    import subprocess
    import wave

    from agi_bridge.audio import resample_to_8k

    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(wpm), "--stdout", text],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate, frames = w.getframerate(), w.readframes(w.getnframes())
    pcm, _ = resample_to_8k(frames, rate, None)
    return pcm
