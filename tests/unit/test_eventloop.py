"""serve --loop: asyncio's loop or uvloop, and the settled heap (agi_bridge/eventloop.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from agi_bridge import eventloop


async def _kind() -> str:
    return eventloop.name()


def test_asyncio_is_asyncio_and_uvloop_is_uvloop() -> None:
    assert eventloop.loop_factory("asyncio") is None
    assert eventloop.run(_kind(), "asyncio") == "asyncio"
    assert eventloop.run(_kind(), "uvloop") == "uvloop"  # a dev dependency: installed


def test_an_unknown_loop_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected one of auto, uvloop, asyncio"):
        eventloop.loop_factory("trio")


def test_the_shared_tick_runs_on_uvloop_at_its_pace() -> None:
    async def ticks() -> list[float]:
        from agi_bridge.ticker import shared

        seen: list[float] = []
        ticker = shared()
        key = ticker.subscribe(seen.append)
        await asyncio.sleep(0.5)
        ticker.unsubscribe(key)
        return seen

    seen = eventloop.run(ticks(), "uvloop")
    # 25 deadlines in 0.5 s; an early libuv timer must not add ticks (generous bounds)
    assert 10 <= len(seen) <= 26


def test_settle_heap_takes_start_up_objects_out_of_later_collections() -> None:
    # in a child process: freezing pytest's own heap would change every later test
    code = (
        "import gc, agi_bridge.app\n"
        "from agi_bridge.eventloop import settle_heap\n"
        "before = len(gc.get_objects())\n"
        "frozen = settle_heap()\n"
        "print(before, frozen, len(gc.get_objects()), gc.get_freeze_count())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    before, frozen, tracked, count = map(int, out.split())
    assert frozen == count and frozen >= before // 2
    assert tracked < before // 20, "a full collection still walks the start-up objects"
