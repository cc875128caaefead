"""The optional call recording: stereo WAV, caller left, agent right, 8 kHz slin16."""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from agi_bridge import audio
from agi_bridge.audio import SAMPLE_RATE, SLIN_FRAME_BYTES

log = logging.getLogger("agi_bridge.records")

_WAV_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
_CHANNELS = 2


def _wav_header(data_bytes: int) -> bytes:
    return _WAV_HEADER.pack(
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        _CHANNELS,
        SAMPLE_RATE,
        SAMPLE_RATE * 2 * _CHANNELS,
        2 * _CHANNELS,
        16,
        b"data",
        data_bytes,
    )


class WavRecorder:
    """Stereo recording of one call: caller left, agent right, on one 20 ms timeline.

    The call feeds it from its two audio paths (``Call.recorder``): ``agent_frame`` once
    per frame the playout clock released to Asterisk (so a barge-in cut is recorded
    exactly as heard: silence after the cut), ``caller_audio`` per frame received.

    Alignment. The timeline is the playout clock: sample ``n`` of the file is the 20 ms
    tick ``n // 160`` of the pacer, counted from the first released frame. The agent
    channel is simply every released frame in order, plus silence for the frames a pacer
    re-anchor skipped (``skipped`` is the pacer's running count), so it *is* the clock.
    Caller frames arrive at Asterisk's pace, in TCP batches and with jitter, so they are
    placed by arrival time on that clock: the caller audio received between two ticks
    is one batch that ended when its last frame arrived. A batch is appended right after
    the previous caller audio while that is within ``jitter_ms`` of where the clock puts
    it; if it starts later (the caller sent nothing for a while) the gap is filled with
    silence, if earlier (late audio, or Asterisk's clock running fast) its overlap is
    dropped. A caller that sends nothing at all is padded with silence up to
    ``idle_lag_ms`` behind the clock, so memory stays bounded and the file keeps growing.

    Samples are written when both channels have them; the header is fixed up and the
    file flushed every second, so a killed bridge leaves a WAV readable up to then.
    Everything here is a few bytearray operations per frame: this runs on the 20 ms path.
    """

    FLUSH_TICKS = 50  # 1 s

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        jitter_ms: int = 60,
        idle_lag_ms: int = 200,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._jitter = jitter_ms * SAMPLE_RATE // 1000
        self._idle_lag = idle_lag_ms * SAMPLE_RATE // 1000
        self._file: IO[bytes] | None = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._file.write(_wav_header(0))
        self._caller = bytearray()  # placed caller samples not yet written
        self._agent = bytearray()  # released agent samples not yet written
        self._pending = bytearray()  # caller audio received since the last tick
        self._pending_at = 0.0
        self._origin: float | None = None
        self._skipped = 0
        self.written = 0  # stereo sample frames in the file
        self._ticks = 0

    @property
    def duration_s(self) -> float:
        return self.written / SAMPLE_RATE

    def caller_audio(self, pcm: bytes) -> None:
        self._pending += pcm
        self._pending_at = self._clock()

    def agent_frame(self, pcm: bytes, skipped: int = 0) -> None:
        if self._file is None:
            return
        now = self._clock()
        if self._origin is None:
            self._origin = now
            self._skipped = skipped
        if skipped > self._skipped:
            self._agent += bytes(SLIN_FRAME_BYTES * (skipped - self._skipped))
            self._skipped = skipped
        self._agent += pcm
        self._place_caller(now, self._origin)
        try:
            self._write()
            self._ticks += 1
            if self._ticks % self.FLUSH_TICKS == 0:
                self._fix_header()
        except OSError as exc:
            self._fail(exc)

    def _place_caller(self, now: float, origin: float) -> None:
        cur = self.written + len(self._caller) // 2  # end of the caller track, in samples
        if self._pending:
            pending = self._pending
            n = len(pending) // 2
            start = round((self._pending_at - origin) * SAMPLE_RATE) - n
            if start > cur + self._jitter:
                self._caller += bytes(2 * (start - cur))  # the caller sent nothing meanwhile
            elif start < cur - self._jitter:
                del pending[: 2 * min(cur - start, n)]  # overlaps what is placed already
            self._caller += pending
            pending.clear()
        else:
            target = round((now - origin) * SAMPLE_RATE) - self._idle_lag
            if cur < target:
                self._caller += bytes(2 * (target - cur))

    def _write(self) -> None:
        n = min(len(self._caller), len(self._agent)) // 2
        if n <= 0 or self._file is None:
            return
        # interleave caller (left) and agent (right) with the same stdlib codec module
        left = audio.to_stereo(bytes(self._caller[: 2 * n]), left=True)
        right = audio.to_stereo(bytes(self._agent[: 2 * n]), left=False)
        self._file.write(audio.mix(left, right))
        del self._caller[: 2 * n]
        del self._agent[: 2 * n]
        self.written += n

    def _fix_header(self) -> None:
        assert self._file is not None
        self._file.seek(0)
        self._file.write(_wav_header(self.written * 2 * _CHANNELS))
        self._file.seek(0, os.SEEK_END)
        self._file.flush()

    def _fail(self, exc: OSError) -> None:
        log.error("recording %s stopped: %s", self.path, exc)
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()

    def close(self) -> None:
        """Write what is left (the shorter channel padded with silence), fix the header."""
        if self._file is None:
            return
        if self._origin is not None:
            self._place_caller(self._clock(), self._origin)
        longest = max(len(self._caller), len(self._agent))
        self._caller += bytes(longest - len(self._caller))
        self._agent += bytes(longest - len(self._agent))
        try:
            self._write()
            self._fix_header()
            self._file.close()
        except OSError as exc:
            self._fail(exc)
        self._file = None
