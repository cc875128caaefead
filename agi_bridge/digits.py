"""Digit collection that keeps secrets from the model (the ``collect_digits`` tool).

While a collection runs, the caller's DTMF digits go into the collector, not to the
model, and every place that would show them (call events, records, logs) shows
:data:`MASK` instead. Sans-I/O: times are passed in; the call waits on its own event.

A collection ends when ``max_digits`` have been typed, the terminator key is pressed (not
part of the digits), ``timeout_s`` passes without the first digit, or ``inter_digit_s``
passes after the last one.
"""

from __future__ import annotations

from dataclasses import dataclass

MASK = "*"  # what a collected digit looks like everywhere but in the webhook request
MAX_DIGITS = 32
DEFAULT_INTER_DIGIT_S = 5.0


@dataclass
class Collection:
    max_digits: int
    terminator: str  # "" = none
    started: float
    timeout_s: float
    inter_digit_s: float = DEFAULT_INTER_DIGIT_S
    digits: str = ""
    last: float | None = None
    ended: str = ""  # "" running | "complete" | "terminator" | "timeout"


class DigitCollector:
    def __init__(self) -> None:
        self.current: Collection | None = None

    @property
    def active(self) -> bool:
        return self.current is not None and not self.current.ended

    def start(
        self,
        now: float,
        *,
        max_digits: int,
        terminator: str = "#",
        timeout_s: float = 15.0,
        inter_digit_s: float = DEFAULT_INTER_DIGIT_S,
    ) -> Collection:
        if not 1 <= max_digits <= MAX_DIGITS:
            raise ValueError(f"max_digits must be 1..{MAX_DIGITS}, got {max_digits}")
        if terminator not in ("", "#", "*"):
            raise ValueError("terminator must be '#', '*' or ''")
        if self.active:
            raise ValueError("a digit collection is already running")
        self.current = Collection(max_digits, terminator, now, timeout_s, inter_digit_s)
        return self.current

    def feed(self, digit: str, now: float) -> bool:
        """A caller digit: True when it was collected (mask it, keep it from the model)."""
        c = self.current
        if c is None or c.ended:
            return False
        if self.expired(now):
            return False
        if c.terminator and digit == c.terminator:
            c.ended = "terminator"
            return True
        c.digits += digit
        c.last = now
        if len(c.digits) >= c.max_digits:
            c.ended = "complete"
        return True

    def expired(self, now: float) -> bool:
        """True (and ends it as timeout) once its time is up."""
        c = self.current
        if c is None or c.ended:
            return False
        since, limit = (c.started, c.timeout_s) if c.last is None else (c.last, c.inter_digit_s)
        over = now - since >= limit
        if over:
            c.ended = "timeout"
        return over

    def next_deadline(self) -> float | None:
        c = self.current
        if c is None or c.ended:
            return None
        return c.started + c.timeout_s if c.last is None else c.last + c.inter_digit_s

    def take(self) -> Collection | None:
        """The finished collection (and forget it)."""
        c, self.current = self.current, None
        return c
