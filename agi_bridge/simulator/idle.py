"""Server VAD's ``idle_timeout_ms``, as the GA service documents it (openai-python
types/realtime/input_audio_buffer_timeout_triggered.py): when no speech is detected for
``idle_timeout_ms`` after the playback of the last model response, the service sends
``input_audio_buffer.timeout_triggered`` {audio_start_ms, audio_end_ms, item_id}, commits
the silent audio as an input item (``input_audio_buffer.committed``) and generates a
response. Times are offsets in the input audio buffer's timeline (ms of audio appended).

Pure state, no I/O: the session feeds it the timeline and acts on what ``due`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class IdleTimer:
    timeout_ms: int | None = None
    start_ms: float | None = None  # the silence counted from here; None = not armed

    def arm(self, at_ms: float) -> None:
        """A response ended: count silence from the end of its playback."""
        self.start_ms = at_ms

    def disarm(self) -> None:
        """Speech started, or a response began: no timeout until the next response ends."""
        self.start_ms = None

    def due(self, now_ms: float) -> tuple[int, int] | None:
        """(audio_start_ms, audio_end_ms) once the silence reached the timeout, else None.
        Fires once per arming."""
        if self.timeout_ms is None or self.start_ms is None:
            return None
        if now_ms - self.start_ms < self.timeout_ms:
            return None
        start, self.start_ms = self.start_ms, None
        return int(start), int(now_ms)
