"""Freed heap pages go back to the OS (agi_bridge/heap_return.py): on a timer while calls
are up, right after a playout tick, and once after the last call ends."""

from __future__ import annotations

import asyncio
import resource
import time

import pytest

from agi_bridge import ticker as ticker_module
from agi_bridge.heap_return import HeapReturn, libc_trim


class Trims:
    def __init__(self, log: list[str] | None = None) -> None:
        self.count = 0
        self.log = log if log is not None else []

    def __call__(self) -> int:
        self.count += 1
        self.log.append("trim")
        return 1


async def test_trims_on_a_timer_while_calls_are_up_and_once_after_the_last_ends() -> None:
    trims = Trims()
    heap = HeapReturn(trims, every_s=0.05, settle_s=0.02)
    heap.calls_changed(1)
    heap.calls_changed(2)  # a second call does not start a second timer
    await asyncio.sleep(0.18)
    while_up = trims.count
    assert 2 <= while_up <= 4
    heap.calls_changed(1)
    heap.calls_changed(0)
    await asyncio.sleep(0.05)
    assert trims.count == while_up + 1  # the settle trim
    await asyncio.sleep(0.15)
    assert trims.count == while_up + 1  # and nothing more while idle
    assert heap.trims == trims.count and heap.last_trim_ms >= 0
    heap.close()


async def test_the_trim_runs_after_the_calls_frames_of_that_tick() -> None:
    order: list[str] = []
    trims = Trims(order)
    ticker = ticker_module.shared()
    key = ticker.subscribe(lambda now: order.append("frame"))
    try:
        heap = HeapReturn(trims, every_s=0.03, settle_s=0.01)
        heap.calls_changed(1)
        await asyncio.sleep(0.12)
        heap.close()
    finally:
        ticker.unsubscribe(key)
    assert trims.count >= 2
    for i, what in enumerate(order):
        if what == "trim":
            assert order[i - 1] == "frame"  # in the same tick, after the call's frame
    assert len(ticker) == 0  # the one-shot subscription is gone


async def test_closed_or_without_trim_it_does_nothing() -> None:
    trims = Trims()
    heap = HeapReturn(trims, every_s=0.01, settle_s=0.01)
    heap.close()
    heap.calls_changed(1)
    heap.calls_changed(0)
    await asyncio.sleep(0.05)
    assert trims.count == 0
    inert = HeapReturn(None, every_s=0.01)
    assert not inert.enabled
    inert.calls_changed(1)
    await asyncio.sleep(0.03)
    assert inert.trims == 0


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_glibc_trim_hands_freed_pages_back() -> None:
    trim = libc_trim()
    if trim is None:  # this project's machines run glibc: a missing trim is a failure here
        pytest.fail("malloc_trim not found in the C library")
    # many mid-sized blocks (below the mmap threshold: they live in the heap), then all
    # but the last freed: the heap cannot shrink from its top, only trim can return them
    blocks = [bytearray(64 * 1024) for _ in range(800)]  # 50 MiB, touched
    keep = blocks[-1]
    del blocks
    before = _rss_kib()
    t0 = time.perf_counter()
    trim()
    elapsed = time.perf_counter() - t0
    after = _rss_kib()
    assert before - after > 20 * 1024, (before, after)
    assert elapsed < 5.0
    assert len(keep) == 64 * 1024
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >= after
