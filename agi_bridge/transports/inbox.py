"""The bounded inbox behind a media port's ``receive()``: caller audio, key presses, end.

Audio is a stream: when the Call does not keep up, the oldest audio is dropped (and
counted), never the newest, and never a key press or the end of the call.
"""

from __future__ import annotations

import asyncio
from collections import deque

from agi_bridge.call.ports import CallerAudio, CallerDtmf, MediaEnded, MediaEvent

MAX_AUDIO_FRAMES = 50  # 1 s of 20 ms frames waiting for the Call
MAX_DIGITS = 32


class MediaInbox:
    def __init__(self, *, max_audio: int = MAX_AUDIO_FRAMES, max_digits: int = MAX_DIGITS):
        self._events: deque[CallerAudio | CallerDtmf] = deque()
        self._audio = 0
        self._max_audio = max_audio
        self._max_digits = max_digits
        self._ended: MediaEnded | None = None
        self._wakeup = asyncio.Event()
        self.audio_dropped = 0
        self.digits_dropped = 0

    @property
    def ended(self) -> bool:
        return self._ended is not None

    def put_audio(self, data: bytes) -> None:
        if self._ended is not None:
            return
        if self._audio >= self._max_audio:
            for i, event in enumerate(self._events):
                if isinstance(event, CallerAudio):
                    del self._events[i]
                    self._audio -= 1
                    self.audio_dropped += 1
                    break
        self._events.append(CallerAudio(data))
        self._audio += 1
        self._wakeup.set()

    def put_digit(self, digit: str) -> None:
        if self._ended is not None:
            return
        if len(self._events) - self._audio >= self._max_digits:
            self.digits_dropped += 1
            return
        self._events.append(CallerDtmf(digit))
        self._wakeup.set()

    def end(self, detail: str) -> None:
        """The caller's side is gone; the first reason is kept."""
        if self._ended is None:
            self._ended = MediaEnded(detail)
        self._wakeup.set()

    async def get(self) -> list[MediaEvent]:
        """Everything waiting (at least one event); after the end only ``[MediaEnded]``."""
        while not self._events and self._ended is None:
            self._wakeup.clear()
            await self._wakeup.wait()
        out: list[MediaEvent] = list(self._events)
        self._events.clear()
        self._audio = 0
        if self._ended is not None:
            out.append(self._ended)
        return out
