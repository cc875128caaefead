"""An energy VAD on the audio timeline (ms of audio appended), not on the wall clock.

The service measures turns in audio time: ``audio_start_ms``/``audio_end_ms`` count the
audio the client appended since the session began, however fast it was sent. So a test
can push 3 s of audio in one burst and get the same events as a phone call does in 3 s.

Per 20 ms frame: speech starts after ``start_ms`` of consecutive frames above the
threshold and is reported ``prefix_padding_ms`` earlier (the service includes that padding
in the item); it stops after ``silence_ms`` of consecutive frames below it and is reported
at the end of that silence (the service's ``audio_end_ms`` includes it too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agi_bridge.simulator.codec import Samples

FRAME_MS = 20


@dataclass(frozen=True, slots=True)
class VadEvent:
    kind: str  # "start" | "stop"
    ms: int  # on the session's audio timeline


def threshold_dbfs(base_dbfs: float, threshold: float) -> float:
    """Map server_vad's 0..1 ``threshold`` onto a level: 0.5 -> base, each 0.1 = 4 dB."""
    return base_dbfs + (threshold - 0.5) * 40.0


class EnergyVad:
    def __init__(
        self,
        rate: int,
        *,
        threshold_dbfs: float = -40.0,
        start_ms: int = 60,
        silence_ms: int = 500,
        prefix_padding_ms: int = 300,
        offset_ms: float = 0.0,
    ):
        self.rate = rate
        self.frame_n = rate * FRAME_MS // 1000
        # Compare mean squares, not dB, so the hot loop has no log10.
        self._level = (32768.0 * 10 ** (threshold_dbfs / 20)) ** 2
        self.start_frames = max(1, math.ceil(start_ms / FRAME_MS))
        self.stop_frames = max(1, math.ceil(silence_ms / FRAME_MS))
        self.prefix_padding_ms = prefix_padding_ms
        self.in_speech = False
        self._above = 0
        self._below = 0
        self._frames = 0  # whole frames seen since offset_ms
        self._offset_ms = offset_ms
        self._rest = np.zeros(0, dtype=np.int16)
        self.floor_ms = 0  # speech never starts before this (the last commit/clear)

    @property
    def now_ms(self) -> float:
        return self._offset_ms + (self._frames * self.frame_n + len(self._rest)) * 1000 / self.rate

    def reset(self, floor_ms: int) -> None:
        """Forget the current turn (after a commit or a clear)."""
        self.in_speech = False
        self._above = self._below = 0
        self.floor_ms = floor_ms

    def feed(self, samples: Samples) -> list[VadEvent]:
        data = np.concatenate((self._rest, samples)) if len(self._rest) else samples
        whole = len(data) // self.frame_n * self.frame_n
        self._rest = data[whole:].copy()
        if not whole:
            return []
        frames = data[:whole].astype(np.float64).reshape(-1, self.frame_n)
        loud = (frames**2).mean(axis=1) > self._level
        events: list[VadEvent] = []
        for is_loud in loud.tolist():
            self._frames += 1
            end_ms = self._offset_ms + self._frames * FRAME_MS
            if not self.in_speech:
                self._above = self._above + 1 if is_loud else 0
                if self._above >= self.start_frames:
                    first_loud = end_ms - self._above * FRAME_MS
                    start = max(self.floor_ms, round(first_loud - self.prefix_padding_ms))
                    events.append(VadEvent("start", start))
                    self.in_speech = True
                    self._below = 0
            else:
                self._below = 0 if is_loud else self._below + 1
                if self._below >= self.stop_frames:
                    events.append(VadEvent("stop", round(end_ms)))
                    self.in_speech = False
                    self._above = 0
        return events
