"""The watchdog of one provider session: a stall and the rollover, on one lazy timer.

A Call reads its session's events in one task (call.py ``_read_session``). Watching that
reader with a wait per event (a task per read, a timeout per wait) cost about 20 µs an
event, most of them audio deltas; here the reader only notes each event's time and the
timer, when it fires, looks at that time and moves itself on if events came meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agi_bridge.providers import base as p

ROLLOVER = "session rollover before the 60 minute limit"
ROLLOVER_POLL_S = 0.25  # past the rollover time: how often to look for a pause
STALLED = "stalled"


class SessionWatch:
    """The watchdog of one provider session: a stall (an event owed, none for
    ``stall_s``) and the rollover (past ``rollover_at``, at a pause). One timer, moved
    lazily: the reader only notes each event's time, and re-arms the timer when the
    session starts to owe an event and none is armed early enough."""

    APPLY_RECHECK_S = 0.05

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        stall_s: float,
        rollover_at: float,
        owed: Callable[[], bool],
        playing: Callable[[], bool],
    ) -> None:
        self._clock = clock
        self.stall_s = stall_s
        self.rollover_at = rollover_at
        self._response_owed = owed
        self._playing = playing
        self.last_event_at = clock()
        self.speaking = False
        self.turn_ended = False  # the last event was SpeechStopped: a response decision is owed
        self.applying = False
        self.verdict: str | None = None  # ROLLOVER or STALLED once the timer ended the reader
        self._reader: asyncio.Future[str] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = float("inf")

    def owed(self) -> bool:
        return self._response_owed() or self.turn_ended

    def saw(self, event: p.ProviderEvent, now: float) -> None:
        self.last_event_at = now
        if isinstance(event, p.SpeechStarted | p.SpeechStopped):
            self.speaking = isinstance(event, p.SpeechStarted)
        self.turn_ended = isinstance(event, p.SpeechStopped)

    def pause_for_rollover(self, now: float) -> bool:
        return (
            now >= self.rollover_at
            and not (self._response_owed() or self.speaking)
            and not self._playing()
        )

    def start(self, reader: asyncio.Future[str]) -> None:
        self._reader = reader
        self.rearm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._reader = None

    def rearm(self) -> None:
        """After an event: make sure a check comes by the next deadline that matters."""
        if self._reader is None:
            return
        if self.owed() and self.stall_s > 0:
            due = self.last_event_at + self.stall_s
        elif self.rollover_at < float("inf"):
            due = max(self.rollover_at, self._clock() + ROLLOVER_POLL_S)
        else:
            return
        if self._timer is None or due < self._timer_due:
            self._arm(due)

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        delay = max(0.0, due - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._check)

    def _check(self) -> None:
        self._timer = None
        self._timer_due = float("inf")
        reader = self._reader
        if reader is None or reader.done():
            return
        now = self._clock()
        if self.applying:
            self._arm(now + self.APPLY_RECHECK_S)
        elif self.owed() and self.stall_s > 0:
            if now >= self.last_event_at + self.stall_s:
                self.verdict = STALLED
                reader.cancel()
            else:
                self._arm(self.last_event_at + self.stall_s)  # events came meanwhile
        elif now >= self.rollover_at:
            if self.pause_for_rollover(now):
                self.verdict = ROLLOVER
                reader.cancel()
            else:
                self._arm(now + ROLLOVER_POLL_S)  # to look for a pause
        else:
            self.rearm()
