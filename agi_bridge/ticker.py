"""One shared 20 ms tick for the playout of every call of a process.

With one pacing task per call, each call wakes the event loop 50 times a second on its
own timer: at 200 calls that is 10,000 timer entries, task switches and sleeps a second.
A ``Ticker`` keeps one timer on a shared grid of monotonic deadlines (``t0 + k *
interval``) and, on each deadline, calls every subscriber once with the time it woke.
Each subscriber keeps its own ``Pacer`` anchored on that grid (``Ticker.anchor()``), so
the per-call semantics do not change: frames released late are counted, a short stall
is caught up with a bounded burst, a long one re-anchors and counts skipped frames.

No task: the ticker is a chain of one-shot timers, armed while it has subscribers and
cancelled when the last one leaves. The process's shared ticker uses a Linux timerfd
(agi_bridge/timerfd.py: on time to a fraction of a millisecond, where the loop's own
timers wake up to 1.3 ms late); elsewhere, and in tests, ``call_later`` or an injected
scheduler. The clock and the scheduler are injected, so tests drive it exactly
(tests/unit/test_ticker.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from agi_bridge import timerfd
from agi_bridge.audio import FRAME_MS

log = logging.getLogger(__name__)

Tick = Callable[[float], None]
EARLY_S = 50e-6
UVLOOP_SLACK_S = 0.001


class Cancellable(Protocol):
    def cancel(self) -> None: ...


Schedule = Callable[[float, Callable[[], None]], Cancellable]


class Ticker:
    """Calls subscribers on shared deadlines ``t0 + k * interval`` (monotonic)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        schedule: Schedule | None = None,
        *,
        interval: float = FRAME_MS / 1000,
        timer_slack: float = 0.0,
        release: Callable[[], None] | None = None,
    ) -> None:
        self._clock = clock
        self._schedule = schedule
        self._release = release  # told when the last subscriber has left (frees a timerfd)
        self.interval = interval
        # added to every timer: libuv (uvloop) timers count whole ms from a cached loop
        # time and fire up to 1 ms early; asyncio's epoll timeout rounds up on its own
        self.timer_slack = timer_slack
        self.t0 = clock()
        self._subscribers: dict[int, Tick] = {}
        self._next_key = 0
        self._timer: Cancellable | None = None
        self.deadline = 0.0  # of the armed timer
        self.ticks = 0

    def anchor(self) -> float:
        """The next grid deadline at or after now: where a new Pacer starts."""
        k = -(-(self._clock() - self.t0) // self.interval)  # ceil
        return self.t0 + k * self.interval

    def subscribe(self, tick: Tick) -> int:
        """Call ``tick(now)`` on every grid deadline until ``unsubscribe``. ``tick`` must
        not raise (a subscriber that does is dropped and the error logged)."""
        key = self._next_key
        self._next_key += 1
        self._subscribers[key] = tick
        if self._timer is None:
            self._arm(self.anchor())
        return key

    def unsubscribe(self, key: int) -> None:
        self._subscribers.pop(key, None)
        if not self._subscribers:
            self._stop()

    def __len__(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        """Forget every subscriber and stop the timer (its loop is gone)."""
        self._subscribers.clear()
        self._stop()

    def _stop(self) -> None:
        """No subscriber left: no timer, and the scheduler may free what it holds."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._release is not None:
            self._release()

    def _arm(self, deadline: float) -> None:
        self.deadline = deadline
        schedule = self._schedule or _loop_schedule
        delay = max(0.0, deadline - self._clock()) + self.timer_slack
        self._timer = schedule(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = self._clock()
        if now < self.deadline - EARLY_S:
            self._arm(self.deadline)  # a timer that fired early: wait again
            return
        # a few µs early counts as on time (the subscribers' pacers would otherwise
        # leave this deadline's frame for the next tick)
        now = max(now, self.deadline)
        self.ticks += 1
        # a copy: a subscriber may unsubscribe itself (or another) from its tick
        for key, tick in list(self._subscribers.items()):
            try:
                tick(now)
            except Exception:
                log.exception("playout tick failed: subscriber dropped")
                self.unsubscribe(key)
        if self._subscribers:
            # the next grid deadline after now: a late tick does not shift the grid
            done = round((self.deadline - self.t0) / self.interval)
            k = max(done + 1, int((self._clock() - self.t0) / self.interval + 1e-6) + 1)
            self._arm(self.t0 + k * self.interval)


def _loop_schedule(delay: float, fn: Callable[[], None]) -> Cancellable:
    return asyncio.get_running_loop().call_later(delay, fn)


# (loop, its tickers by clock): a loop may not be weak-referenceable (uvloop's), so the
# loop is held here and its entry pruned once it is closed
_shared: dict[int, tuple[asyncio.AbstractEventLoop, dict[int, Ticker]]] = {}


def shared(clock: Callable[[], float] = time.monotonic) -> Ticker:
    """The running event loop's ticker for ``clock`` (one per loop and clock)."""
    loop = asyncio.get_running_loop()
    entry = _shared.get(id(loop))
    if entry is None or entry[0] is not loop:
        for key, (old, old_tickers) in list(_shared.items()):
            if old.is_closed():
                for stale in old_tickers.values():
                    stale.close()  # a loop closed with subscribers left: free its timerfd
                del _shared[key]
        entry = _shared[id(loop)] = (loop, {})
    tickers = entry[1]
    ticker = tickers.get(id(clock))
    if ticker is None:
        if clock is time.monotonic and timerfd.available():
            # a kernel timer on the loop's epoll: on time to ~50 µs (agi_bridge/timerfd.py)
            fd_timer = timerfd.TimerfdSchedule(loop)
            ticker = Ticker(clock, fd_timer, release=fd_timer.cancel)
        else:
            uv = type(loop).__module__.startswith("uvloop")
            ticker = Ticker(clock, timer_slack=UVLOOP_SLACK_S if uv else 0.0)
        tickers[id(clock)] = ticker
    return ticker
