"""Which event loop runs the bridge (``serve --loop``): asyncio's (the default) or uvloop,
and the heap settled once the bridge listens (``settle_heap``).

uvloop (libuv, Cython) does a socket round, a timer and a task step in fewer Python-level
instructions than asyncio's selector loop. Measured here (bench/README.md, "Levers") it
saved about 6 % of the bridge's CPU at 100 calls without Asterisk and nothing through
Asterisk at 30 calls (0.660 against 0.675 % of a core per call), while libuv's
whole-millisecond timers add up to 1 ms of jitter to every 20 ms deadline
(agi_bridge/ticker.py pads them so that none fires early). That does not pay for a
default, so it is opt-in: ``pip install 'agi-bridge[fast]'`` and ``--loop uvloop``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
CHOICES = ("auto", "uvloop", "asyncio")


def loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory for ``choice`` (None: asyncio's default). "uvloop" without uvloop
    installed is an error; "auto" falls back quietly."""
    if choice not in CHOICES:
        raise ValueError(f"event loop {choice!r}: expected one of {', '.join(CHOICES)}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise RuntimeError("--loop uvloop: uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """``asyncio.run`` on the chosen loop."""
    factory = loop_factory(choice)
    with asyncio.Runner(loop_factory=factory) as runner:
        loop = runner.get_loop()
        log.debug("event loop: %s.%s", type(loop).__module__, type(loop).__qualname__)
        return runner.run(main)


def name() -> str:
    """The running loop's kind, for logs and /healthz: "uvloop" or "asyncio"."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


def settle_heap() -> int:
    """Put what start-up allocated out of the cyclic garbage collector's reach; returns how
    many objects that froze.

    A full collection walks every tracked object while no call's frame can leave: after
    start-up (modules, classes, config: some 55,000 objects) one took 43 ms here, a gap
    every caller hears. What is alive once the bridge listens lives as long as the
    process, so ``gc.freeze()`` moves it to the permanent generation, which no later
    collection visits: those walk the calls' own objects only."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
