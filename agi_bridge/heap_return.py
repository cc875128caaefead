"""Hand the heap pages that calls freed back to the operating system.

glibc's malloc keeps what Python frees for later reuse instead of returning it: the
buffers a call's sockets, websocket frames and audio pass through are freed within
milliseconds, but their pages stay in the process. Through Asterisk at 30 calls that
retained, reusable memory was most of the bridge's growth per call, and it stayed after
the calls had ended (bench/README.md, "Memory returned"). ``malloc_trim(0)`` gives free
pages back (it took 0.6 ms with 30 calls up).

So while calls are up the bridge trims every ``every_s`` seconds, right after a shared
playout tick (agi_bridge/ticker.py), when every call's frame has just left and the next
one is 20 ms away; and once the last call has ended it collects cycles and trims again
after ``settle_s``. Where malloc has no ``malloc_trim`` (musl, macOS) nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from collections.abc import Callable

from agi_bridge import ticker as ticker_mod
from agi_bridge.libc import libc

log = logging.getLogger(__name__)

TRIM_EVERY_S = 5.0
SETTLE_S = 1.0

Trim = Callable[[], int]


def libc_trim() -> Trim | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none."""
    c = libc()
    fn = getattr(c, "malloc_trim", None) if c is not None else None
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int

    def trim() -> int:
        return int(fn(0))

    return trim


class HeapReturn:
    """Trims the heap on a timer while calls are up, and once after the last one ends.

    ``calls_changed(active)`` is called by the Bridge at every call's start and end."""

    def __init__(
        self,
        trim: Trim | None,
        *,
        every_s: float = TRIM_EVERY_S,
        settle_s: float = SETTLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._trim = trim
        self.every_s = every_s
        self.settle_s = settle_s
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._tick: tuple[ticker_mod.Ticker, int] | None = None  # a trim waiting for a tick
        self._active = 0
        self._closed = False
        self.trims = 0
        self.last_trim_ms = 0.0

    @property
    def enabled(self) -> bool:
        return self._trim is not None

    def calls_changed(self, active: int) -> None:
        if self._trim is None or self._closed:
            return
        was, self._active = self._active, active
        if active and not was:
            self._arm(self.every_s)
        elif not active and was:
            self._arm(self.settle_s)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._leave_tick()

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self._due)

    def _due(self) -> None:
        self._timer = None
        if not self._active:
            gc.collect()  # the ended calls' cycles; the start-up heap is frozen (cheap)
            self._run()
            return
        ticker = ticker_mod.shared(self._clock)
        if len(ticker) and self._tick is None:
            # after this deadline's frames: subscribers run in order, this one last
            self._tick = (ticker, ticker.subscribe(self._after_tick))
        else:
            self._run()
        self._arm(self.every_s)

    def _after_tick(self, _now: float) -> None:
        self._leave_tick()
        self._run()

    def _leave_tick(self) -> None:
        if self._tick is not None:
            ticker, key = self._tick
            self._tick = None
            ticker.unsubscribe(key)

    def _run(self) -> None:
        assert self._trim is not None
        t0 = time.perf_counter()
        released = self._trim()
        self.last_trim_ms = (time.perf_counter() - t0) * 1000
        self.trims += 1
        log.debug(
            "heap trimmed in %.2f ms (%s), %d calls up",
            self.last_trim_ms,
            "pages returned" if released else "nothing to return",
            self._active,
        )
