"""The shared playout tick (agi_bridge/ticker.py), driven by an injected clock and a
hand-cranked scheduler: every deadline and every frame count is exact."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest

from agi_bridge import ticker as ticker_module
from agi_bridge.playout import Pacer
from agi_bridge.ticker import Ticker


class Clock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Timer:
    def __init__(self, sched: Scheduler, when: float, fn: Callable[[], None]) -> None:
        self.sched, self.when, self.fn, self.cancelled = sched, when, fn, False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """call_later on the fake clock; ``run_until(t)`` fires what is due, in order, with
    the clock set to each timer's deadline plus ``lateness``."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.timers: list[Timer] = []
        self.lateness = 0.0

    def __call__(self, delay: float, fn: Callable[[], None]) -> Timer:
        timer = Timer(self, self.clock.t + delay, fn)
        self.timers.append(timer)
        return timer

    @property
    def armed(self) -> list[Timer]:
        return [t for t in self.timers if not t.cancelled]

    def run_until(self, t: float) -> None:
        while True:
            due = [x for x in self.armed if x.when <= t]
            if not due:
                break
            timer = min(due, key=lambda x: x.when)
            self.timers.remove(timer)
            self.clock.t = max(self.clock.t, timer.when + self.lateness)
            timer.fn()
        self.clock.t = max(self.clock.t, t)


def make() -> tuple[Clock, Scheduler, Ticker]:
    clock = Clock()
    sched = Scheduler(clock)
    return clock, sched, Ticker(clock, sched)


def test_one_timer_for_all_subscribers_on_a_shared_grid() -> None:
    clock, sched, ticker = make()
    seen: dict[str, list[float]] = {"a": [], "b": []}
    ticker.subscribe(seen["a"].append)
    clock.t = 100.007
    ticker.subscribe(seen["b"].append)
    assert len(sched.armed) == 1  # the second subscriber arms nothing
    sched.run_until(100.1)
    # the first deadline (100.0) fired late, at 100.007; the grid stays where it was
    assert seen["a"] == pytest.approx([100.007, 100.02, 100.04, 100.06, 100.08, 100.1])
    assert seen["b"] == seen["a"]
    assert ticker.ticks == 6


def test_anchor_is_the_next_grid_deadline() -> None:
    clock, _, ticker = make()
    assert ticker.anchor() == pytest.approx(100.0)
    clock.t = 100.005
    assert ticker.anchor() == pytest.approx(100.02)
    clock.t = 100.02
    assert ticker.anchor() == pytest.approx(100.02)


def test_last_unsubscribe_cancels_the_timer_and_the_next_subscribe_rearms() -> None:
    clock, sched, ticker = make()
    a = ticker.subscribe(lambda now: None)
    b = ticker.subscribe(lambda now: None)
    ticker.unsubscribe(a)
    assert len(sched.armed) == 1
    ticker.unsubscribe(b)
    assert sched.armed == []
    clock.t = 100.031
    ticker.subscribe(lambda now: None)
    assert [t.when for t in sched.armed] == [pytest.approx(100.04)]


def test_a_late_tick_does_not_shift_the_grid() -> None:
    clock, sched, ticker = make()
    times: list[float] = []
    ticker.subscribe(times.append)
    sched.run_until(100.0)
    clock.t = 100.047  # the loop was busy: the 100.02 and 100.04 deadlines fire late
    sched.run_until(100.047)
    sched.run_until(100.1)
    # after the late tick the next deadline is back on the grid (100.06, 100.08, 100.1)
    assert times[-3:] == pytest.approx([100.06, 100.08, 100.1])


def test_a_failing_subscriber_is_dropped_and_the_others_go_on() -> None:
    _, sched, ticker = make()
    good: list[float] = []

    def bad(now: float) -> None:
        raise RuntimeError("boom")

    ticker.subscribe(bad)
    ticker.subscribe(good.append)
    sched.run_until(100.04)
    assert len(good) == 3
    assert len(ticker) == 1


def test_a_subscriber_may_unsubscribe_itself_during_its_tick() -> None:
    _, sched, ticker = make()
    calls: list[float] = []
    keys: list[int] = []

    def once(now: float) -> None:
        calls.append(now)
        ticker.unsubscribe(keys[0])

    keys.append(ticker.subscribe(once))
    sched.run_until(100.1)
    assert len(calls) == 1
    assert sched.armed == []


# ----------------------------------------------- per-call Pacer semantics on the tick


def released_per_tick(pacer: Pacer, ticker: Ticker) -> list[int]:
    out: list[int] = []
    ticker.subscribe(lambda now: out.append(pacer.due(now)))
    return out


def test_pacer_on_the_grid_releases_one_frame_per_tick() -> None:
    clock, sched, ticker = make()
    clock.t = 100.013
    pacer = Pacer(clock, t0=ticker.anchor())
    counts = released_per_tick(pacer, ticker)
    sched.run_until(100.5)
    assert counts == [1] * 25  # 100.02 ... 100.5
    assert (pacer.late_frames, pacer.skipped_frames) == (0, 0)


def test_pacer_on_the_grid_counts_late_frames_and_bounds_the_catch_up() -> None:
    clock, sched, ticker = make()
    pacer = Pacer(clock, t0=ticker.anchor(), max_burst=5)
    counts = released_per_tick(pacer, ticker)
    sched.run_until(100.0)
    clock.t = 100.065  # a 65 ms stall: 3 deadlines passed
    sched.run_until(100.065)
    assert counts == [1, 3]  # 100.02, .04, .06 at once; two of them more than 20 ms late
    assert pacer.late_frames == 2
    clock.t = 100.3  # a 235 ms stall: more than max_burst frames behind
    sched.run_until(100.3)
    assert counts[-1] == 1  # re-anchored: one frame, the rest skipped
    assert pacer.skipped_frames == 11
    sched.run_until(100.4)
    assert counts[-5:] == [1] * 5
    assert pacer.frames_sent == 1 + 3 + 12 + 5


def test_a_pacer_anchored_ahead_of_now_releases_nothing_early() -> None:
    clock, _, ticker = make()
    clock.t = 100.001
    pacer = Pacer(clock, t0=ticker.anchor())  # first deadline 100.02
    assert pacer.due(100.001) == 0
    assert pacer.due(100.0199999999) == 1  # within the rounding epsilon
    assert pacer.due(100.02) == 0


async def test_shared_is_one_ticker_per_loop_and_clock_on_the_real_loop() -> None:
    a = ticker_module.shared()
    assert ticker_module.shared() is a
    clock = Clock()
    assert ticker_module.shared(clock) is not a
    # on the real loop: three ticks in about 40 ms
    seen: list[float] = []
    three = asyncio.Event()

    def tick(now: float) -> None:
        seen.append(now)
        if len(seen) == 3:
            three.set()

    key = a.subscribe(tick)
    async with asyncio.timeout(5):
        await three.wait()
    a.unsubscribe(key)
    gaps = [y - x for x, y in itertools.pairwise(seen)]
    assert all(0.005 < g < 0.5 for g in gaps)  # generous: a shared CI machine


def test_an_early_timer_waits_again_without_calling_anyone() -> None:
    clock, sched, ticker = make()
    seen: list[float] = []
    ticker.subscribe(seen.append)
    sched.run_until(100.0)
    timer = sched.armed[0]
    clock.t = 100.0195  # libuv fires 0.5 ms before the 100.02 deadline
    sched.timers.remove(timer)
    timer.fn()
    assert seen == [100.0]
    assert [t.when for t in sched.armed] == [pytest.approx(100.02)]


def test_a_tick_a_few_microseconds_early_counts_as_on_time() -> None:
    clock, sched, ticker = make()
    clock.t = 100.001
    pacer = Pacer(clock, t0=ticker.anchor())  # first deadline 100.02
    counts = released_per_tick(pacer, ticker)
    timer = sched.armed[0]
    sched.timers.remove(timer)
    clock.t = 100.02 - 20e-6
    timer.fn()
    assert counts == [1]  # released now, not left for the next tick
    assert [t.when for t in sched.armed] == [pytest.approx(100.04)]  # not 100.02 again


def test_timer_slack_is_added_to_every_timer() -> None:
    clock = Clock()
    sched = Scheduler(clock)
    ticker = Ticker(clock, sched, timer_slack=0.001)
    clock.t = 100.005
    ticker.subscribe(lambda now: None)
    assert [t.when for t in sched.armed] == [pytest.approx(100.021)]
