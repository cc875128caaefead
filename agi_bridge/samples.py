"""A fixed-size ring of float samples (latencies, frame times) in one compact array.

A deque of Python floats costs ~32 bytes a sample; a call keeps a few thousand of them for
its pacing and latency figures, so the ring stores raw doubles instead (8 bytes each).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator


class Samples:
    """The last ``size`` values appended, oldest first when iterated."""

    __slots__ = ("_data", "_full", "_next", "_size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a sample ring needs room for one value, got {size}")
        self._data = array("d", bytes(8 * size))
        self._size = size
        self._next = 0
        self._full = False

    def append(self, value: float) -> None:
        self._data[self._next] = value
        self._next += 1
        if self._next == self._size:
            self._next = 0
            self._full = True

    def __len__(self) -> int:
        return self._size if self._full else self._next

    def __iter__(self) -> Iterator[float]:
        if self._full:
            yield from self._data[self._next :]
        yield from self._data[: self._next]

    def __repr__(self) -> str:
        return f"Samples({len(self)}/{self._size})"
