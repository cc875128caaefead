"""serve --loop: asyncio's loop or uvloop (agi_bridge/eventloop.py)."""

from __future__ import annotations

import asyncio

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
