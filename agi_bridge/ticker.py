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
# slots per 20 ms of the process's shared ticker: calls' frames leave in this many groups
# 5 ms apart (bench/README.md, "Spread over the 20 ms"); an empty slot costs no wake-up
PHASES = 4


class Cancellable(Protocol):
    def cancel(self) -> None: ...


Schedule = Callable[[float, Callable[[], None]], Cancellable]


class Ticker:
    """Calls subscribers on shared deadlines ``t0 + k * interval`` (monotonic).

    With ``phases`` > 1 the grid is cut into that many slots (``interval / phases``
    apart) and each subscriber gets the least used slot: it is called once per
    ``interval``, at ``t0 + phase * step + k * interval``. The frames of a process's calls
    then leave in ``phases`` small groups instead of one burst, and the PBX, which
    wakes one thread per call to forward each frame, gets them spread over the 20 ms."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        schedule: Schedule | None = None,
        *,
        interval: float = FRAME_MS / 1000,
        timer_slack: float = 0.0,
        release: Callable[[], None] | None = None,
        phases: int = 1,
    ) -> None:
        if phases < 1:
            raise ValueError(f"a ticker needs at least one phase, got {phases}")
        self._clock = clock
        self._schedule = schedule
        self._release = release  # told when the last subscriber has left (frees a timerfd)
        self.interval = interval
        self.phases = phases
        self.step = interval / phases
        # added to every timer: libuv (uvloop) timers count whole ms from a cached loop
        # time and fire up to 1 ms early; asyncio's epoll timeout rounds up on its own
        self.timer_slack = timer_slack
        self.t0 = clock()
        self._subscribers: dict[int, Tick] = {}
        self._phase_of: dict[int, int] = {}
        self._load = [0] * phases
        self._next_key = 0
        self._timer: Cancellable | None = None
        self.deadline = 0.0  # of the armed timer
        self._slot = -1  # the grid slot (index in steps) of the armed timer
        self._served = -1  # the last slot whose subscribers were called
        self.ticks = 0

    def anchor(self, key: int | None = None) -> float:
        """The next deadline at or after now of ``key``'s phase (phase 0 without a key):
        where a new Pacer starts."""
        phase = self._phase_of.get(key, 0) if key is not None else 0
        base = self.t0 + phase * self.step
        k = -(-(self._clock() - base) // self.interval)  # ceil
        return base + k * self.interval

    def subscribe(self, tick: Tick) -> int:
        """Call ``tick(now)`` once per interval, in the least used phase, until
        ``unsubscribe``. ``tick`` must not raise (a subscriber that does is dropped and
        the error logged)."""
        key = self._next_key
        self._next_key += 1
        phase = min(range(self.phases), key=self._load.__getitem__)
        self._subscribers[key] = tick
        self._phase_of[key] = phase
        self._load[phase] += 1
        if self._timer is None:
            self._arm_after(self._slot_at_or_after(self._clock()) - 1)
        elif phase != self._slot % self.phases and self.phases > 1:
            # a slot of this phase may come before the armed one
            first = self._next_slot(self._served)
            if first < self._slot:
                self._timer.cancel()
                self._arm_slot(first)
        return key

    def unsubscribe(self, key: int) -> None:
        if self._subscribers.pop(key, None) is None:
            return
        self._load[self._phase_of.pop(key)] -= 1
        if not self._subscribers and self._timer is not None:
            self._timer.cancel()
            self._timer = None
            if self._release is not None:
                self._release()

    def __len__(self) -> int:
        return len(self._subscribers)

    def _slot_at_or_after(self, t: float) -> int:
        return int(-(-(t - self.t0 - 1e-9) // self.step))

    def _next_slot(self, after: int) -> int:
        """The first slot after ``after`` whose phase has subscribers."""
        for k in range(after + 1, after + 1 + self.phases):
            if self._load[k % self.phases]:
                return k
        return after + 1  # nobody subscribed: only reached while arming for a first one

    def _arm_after(self, after: int) -> None:
        self._served = max(self._served, after)
        self._arm_slot(self._next_slot(after))

    def _arm_slot(self, slot: int) -> None:
        self._slot = slot
        self._arm(self.t0 + slot * self.step)

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
        # late: the slots that passed meanwhile are served now too (once each phase)
        last = max(self._slot, int((now - self.t0) / self.step + 1e-6))
        if last - self._served >= self.phases:
            due = None  # a whole interval or more: every phase
        else:
            due = {k % self.phases for k in range(self._served + 1, last + 1)}
        self._served = last
        phase_of = self._phase_of
        # a copy: a subscriber may unsubscribe itself (or another) from its tick
        for key, tick in list(self._subscribers.items()):
            if due is not None and phase_of.get(key) not in due:
                continue
            try:
                tick(now)
            except Exception:
                log.exception("playout tick failed: subscriber dropped")
                self.unsubscribe(key)
        if self._subscribers:
            if self._timer is None:  # (a subscribe during the tick may have armed it)
                # the next slot after now: a late tick does not shift the grid
                after = max(last, int((self._clock() - self.t0) / self.step + 1e-6))
                self._arm_slot(self._next_slot(after))
        elif self._release is not None:
            self._release()  # the last subscriber left during this tick


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
        for key, (old, _) in list(_shared.items()):
            if old.is_closed():
                del _shared[key]
        entry = _shared[id(loop)] = (loop, {})
    tickers = entry[1]
    ticker = tickers.get(id(clock))
    if ticker is None:
        if clock is time.monotonic and timerfd.available():
            # a kernel timer on the loop's epoll: on time to ~50 µs (agi_bridge/timerfd.py)
            fd_timer = timerfd.TimerfdSchedule(loop)
            ticker = Ticker(clock, fd_timer, release=fd_timer.cancel, phases=PHASES)
        else:
            uv = type(loop).__module__.startswith("uvloop")
            slack = UVLOOP_SLACK_S if uv else 0.0
            ticker = Ticker(clock, timer_slack=slack, phases=PHASES)
        tickers[id(clock)] = ticker
    return ticker
