"""The shared tick's kernel timer (agi_bridge/timerfd.py) on a real loop: it fires on time,
re-arms from its own callback, and holds a file descriptor only while the ticker has
subscribers."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from agi_bridge import ticker as ticker_module
from agi_bridge import timerfd


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_timerfd_is_available_on_this_linux() -> None:
    assert timerfd.available()


async def test_it_fires_on_time_and_rearms_from_its_callback() -> None:
    sched = timerfd.TimerfdSchedule(asyncio.get_running_loop())
    fired: list[float] = []
    done = asyncio.Event()
    start = time.monotonic()

    def fn() -> None:
        fired.append(time.monotonic())
        if len(fired) < 5:
            sched(0.01, fn)
        else:
            done.set()

    sched(0.01, fn)
    await asyncio.wait_for(done.wait(), 5)
    sched.cancel()
    assert sched.fires == 5
    gaps = [b - a for a, b in zip([start, *fired], fired, strict=False)]
    assert all(g >= 0.0099 for g in gaps), gaps  # never early
    assert all(g < 0.5 for g in gaps), gaps  # generous: a loaded CI machine


async def test_cancel_disarms_and_closes() -> None:
    before = _fds()
    sched = timerfd.TimerfdSchedule(asyncio.get_running_loop())
    fired: list[int] = []
    sched(0.02, lambda: fired.append(1))
    assert _fds() == before + 1
    sched.cancel()
    assert _fds() == before
    await asyncio.sleep(0.06)
    assert fired == []


async def test_the_shared_ticker_holds_a_timerfd_only_while_subscribed() -> None:
    ticker = ticker_module.shared()
    before = _fds()
    ticks: list[float] = []
    key = ticker.subscribe(ticks.append)
    assert _fds() == before + 1
    await asyncio.sleep(0.2)
    ticker.unsubscribe(key)
    assert _fds() == before
    assert 5 <= len(ticks) <= 11
    # the last subscriber leaving from inside its own tick releases the timer too
    seen: list[float] = []

    def once(now: float) -> None:
        seen.append(now)
        ticker.unsubscribe(key2)

    key2 = ticker.subscribe(once)
    await asyncio.sleep(0.1)
    assert len(seen) == 1 and len(ticker) == 0
    assert _fds() == before


async def test_ticks_land_on_the_grid_never_early() -> None:
    ticker = ticker_module.shared()
    late: list[float] = []
    key = ticker.subscribe(lambda now: late.append(time.monotonic() - ticker.deadline))
    await asyncio.sleep(1.0)
    ticker.unsubscribe(key)
    assert len(late) >= 40
    assert min(late) >= -ticker_module.EARLY_S
    # behaviour, not a benchmark: most ticks are well under the loop timers' whole ms
    late.sort()
    if late[len(late) // 2] > 0.05:
        pytest.fail(f"median tick lateness {late[len(late) // 2] * 1000:.2f} ms")


def test_a_loop_closed_with_subscribers_left_frees_its_timerfd_on_the_next_loop() -> None:
    async def leave_one() -> None:
        ticker_module.shared().subscribe(lambda now: None)  # never unsubscribed
        await asyncio.sleep(0.05)

    before = _fds()
    asyncio.run(leave_one())
    assert _fds() == before + 1  # its loop is closed, the timerfd still open

    async def next_loop() -> None:
        ticker_module.shared()  # prunes the closed loop's tickers

    asyncio.run(next_loop())
    assert _fds() == before
