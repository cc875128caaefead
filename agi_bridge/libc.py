"""The C library, loaded once for the few calls Python's standard library lacks:
``prctl`` (workers.py), ``malloc_trim`` (heap_return.py) and ``timerfd_*`` (timerfd.py).

``ctypes.util.find_library`` runs ``ldconfig -p`` in a subprocess, so the lookup is
cached rather than repeated by each user."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def libc() -> ctypes.CDLL | None:
    """The process's C library (errno kept for ``ctypes.get_errno``), or None."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return None
