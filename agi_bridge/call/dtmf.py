"""Caller DTMF, bounded: a rate limit per call and one message per burst to the model.

A phone sends a few digits a second at most; a flood of DTMF frames (a broken trunk, a
hostile peer) must cost neither the other calls nor the model. Sans-I/O, clock injected:

    gate = DtmfGate(clock)
    if gate.press("5"):          # False: over the rate limit, dropped (and counted)
        ...                      # the digit is real: record it, log it
    gate.due()                   # seconds until the pending digits go to the model
    gate.take()                  # "5#": the digits of one burst, pending cleared
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["DtmfGate"]


class DtmfGate:
    """Token bucket (``rate`` digits/s, ``burst`` at once) + coalescing of what passes:
    digits are sent together once the caller paused ``pause_s`` or ``max_batch`` wait."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        rate: float = 10.0,
        burst: int = 20,
        pause_s: float = 0.3,
        max_batch: int = 32,
    ) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.pause_s = pause_s
        self.max_batch = max_batch
        self._tokens = float(burst)
        self._refilled_at = clock()
        self._pending = ""
        self._last_press = 0.0
        self.accepted = 0
        self.dropped = 0

    def press(self, digit: str) -> bool:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled_at) * self.rate)
        self._refilled_at = now
        if self._tokens < 1.0:
            self.dropped += 1
            return False
        self._tokens -= 1.0
        self.accepted += 1
        self._pending += digit
        self._last_press = now
        return True

    @property
    def pending(self) -> str:
        return self._pending

    def due(self) -> float | None:
        """Seconds until the pending digits are to be sent (0: now); None: nothing pending."""
        if not self._pending:
            return None
        if len(self._pending) >= self.max_batch:
            return 0.0
        return max(0.0, self._last_press + self.pause_s - self.clock())

    def take(self) -> str:
        digits, self._pending = self._pending, ""
        return digits
