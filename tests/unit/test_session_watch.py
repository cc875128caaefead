"""The watchdog of one Realtime session (call.call.SessionWatch): one lazily moved timer
decides a stall (an event owed, none for stall_s) and the rollover (past its time, at a
pause); the reader only notes each event. Real loop timers, short times."""

from __future__ import annotations

import asyncio
import time

from agi_bridge.call.session_watch import ROLLOVER, STALLED, SessionWatch
from agi_bridge.providers import base as p


class State:
    def __init__(self) -> None:
        self.busy = False
        self.audible = False


def watch_for(
    state: State, *, stall_s: float = 0.15, rollover_in: float = float("inf")
) -> SessionWatch:
    return SessionWatch(
        time.monotonic,
        stall_s=stall_s,
        rollover_at=time.monotonic() + rollover_in,
        owed=lambda: state.busy,
        playing=lambda: state.audible,
    )


async def _forever() -> str:
    await asyncio.sleep(60)
    return "never"


async def test_a_stall_is_called_when_an_owed_event_does_not_come() -> None:
    state = State()
    state.busy = True
    watch = watch_for(state)
    reader = asyncio.ensure_future(_forever())
    t0 = time.monotonic()
    watch.start(reader)
    await asyncio.wait({reader}, timeout=2)
    assert reader.cancelled() and watch.verdict == STALLED
    assert 0.14 <= time.monotonic() - t0 < 1.0


async def test_events_keep_a_busy_session_alive_and_nothing_is_owed_when_idle() -> None:
    state = State()
    state.busy = True
    watch = watch_for(state)
    reader = asyncio.ensure_future(_forever())
    watch.start(reader)
    for _ in range(6):  # 0.3 s of events, 0.05 s apart: no stall
        await asyncio.sleep(0.05)
        watch.saw(p.AudioOut("r", "i", b"\xff"), time.monotonic())
        watch.rearm()
    assert not reader.done()
    state.busy = False  # the response ended: nothing owed, no timer needed
    await asyncio.sleep(0.4)
    assert not reader.done() and watch.verdict is None
    watch.stop()
    reader.cancel()


async def test_a_turn_end_is_owed_an_answer_and_applying_defers_the_verdict() -> None:
    state = State()
    watch = watch_for(state)
    reader = asyncio.ensure_future(_forever())
    watch.start(reader)
    watch.saw(p.SpeechStopped("item"), time.monotonic())
    watch.applying = True  # the reader is carrying out outputs: never cut it
    watch.rearm()
    await asyncio.sleep(0.35)
    assert not reader.done()
    watch.applying = False
    await asyncio.wait({reader}, timeout=1)
    assert watch.verdict == STALLED


async def test_rollover_waits_for_a_pause() -> None:
    state = State()
    state.audible = True  # the agent is talking at the rollover time
    watch = watch_for(state, rollover_in=0.1)
    reader = asyncio.ensure_future(_forever())
    watch.start(reader)
    await asyncio.sleep(0.4)
    assert not reader.done()
    assert not watch.pause_for_rollover(time.monotonic())
    state.audible = False
    await asyncio.wait({reader}, timeout=1)
    assert watch.verdict == ROLLOVER
