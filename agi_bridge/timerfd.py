"""A timer for the shared playout tick that fires on time, not up to a millisecond late.

asyncio waits for its next timer in ``epoll_wait``, whose timeout is whole milliseconds,
rounded up: a 20 ms tick woke 0.84 ms late at the median and 1.3 ms at p99 here
(idle machine), and since the rounding differs from tick to tick, every frame interval
the phone hears moved by up to that much (p99 of |interval − 20 ms| 0.73 ms before
Asterisk added anything). uvloop's timers are whole milliseconds too.

A Linux ``timerfd`` is a kernel high-resolution timer that the loop watches like a socket:
epoll returns when it expires (timer slack 50 µs), whatever timeout asyncio computed
for its own timers. One per ticker, open only while the ticker has subscribers; each
tick costs one ``timerfd_settime`` and one ``read``, for all calls together.

Python 3.13 has ``os.timerfd_create``; 3.11 and 3.12 reach the same libc calls with ctypes.
Where there is no timerfd (not Linux) the ticker keeps ``loop.call_later``.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import sys
from collections.abc import Callable

from agi_bridge.libc import libc

log = logging.getLogger(__name__)

CLOCK_MONOTONIC = 1
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _Libc:
    def __init__(self, c: ctypes.CDLL) -> None:
        self.create = c.timerfd_create
        self.create.argtypes = [ctypes.c_int, ctypes.c_int]
        self.create.restype = ctypes.c_int
        self.settime = c.timerfd_settime
        self.settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.POINTER(_Itimerspec),
        ]
        self.settime.restype = ctypes.c_int


_libc: _Libc | None = None
_tried = False


def _load() -> _Libc | None:
    global _libc, _tried
    if not _tried:
        _tried = True
        c = libc()
        if sys.platform.startswith("linux") and c is not None:
            try:
                _libc = _Libc(c)
            except AttributeError as exc:
                log.debug("no timerfd (%s): the playout tick uses the loop's timers", exc)
    return _libc


def available() -> bool:
    return _load() is not None


class TimerfdSchedule:
    """``schedule(delay, fn)`` for a Ticker (agi_bridge/ticker.py): one pending timer at a
    time (the ticker arms the next only from its own tick or after a cancel)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        libc = _load()
        if libc is None:
            raise RuntimeError("timerfd is not available here")
        self._libc = libc
        self._loop = loop
        self._fd = -1
        self._fn: Callable[[], None] | None = None
        self.fires = 0

    def __call__(self, delay: float, fn: Callable[[], None]) -> TimerfdSchedule:
        if self._fd < 0:
            self._open()
        self._fn = fn
        # a zero it_value would disarm the timer: "now" is the next nanosecond
        self._set(max(delay, 1e-9))
        return self

    def cancel(self) -> None:
        """Disarm and close: the ticker has no subscribers left."""
        self._fn = None
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            if not self._loop.is_closed():
                self._loop.remove_reader(fd)
            os.close(fd)

    def _open(self) -> None:
        fd = self._libc.create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        self._fd = fd
        self._loop.add_reader(fd, self._expired)

    def _set(self, delay: float) -> None:
        sec = int(delay)
        spec = _Itimerspec(_Timespec(0, 0), _Timespec(sec, int((delay - sec) * 1e9)))
        if self._libc.settime(self._fd, 0, ctypes.byref(spec), None) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")

    def _expired(self) -> None:
        try:
            os.read(self._fd, 8)  # the expiration count; reading re-arms readiness
        except BlockingIOError:
            return  # re-armed after it fired but before we read: not due yet
        fn, self._fn = self._fn, None
        if fn is not None:
            self.fires += 1
            fn()
