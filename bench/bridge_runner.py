"""The bridge under test, alone in its own process (started by ``bench_calls.py``).

    python bench/bridge_runner.py --sim-url ws://127.0.0.1:PORT/v1/realtime [--log-file F]

Starts a ``Bridge`` with AMI disabled, its listeners on ephemeral ports, call records (if
this version has them) in ``--records-dir`` and the Realtime connector pointed at the
simulator, then prints one JSON line::

    {"ready": true, "pid": ..., "audiosocket_port": ..., "fastagi_port": ...}

and answers one JSON line per command line read from stdin:

- ``{"cmd": "calls"}``: how many calls are live, and in which state;
- ``{"cmd": "mark", "window_s": 20}``: start of the measurement window. Counters are
  snapshotted (later reported as differences) and each call's sample deques are replaced
  by empty ones large enough for the window, so every sample reported afterwards was
  taken inside the window;
- ``{"cmd": "stats"}``: end of the window: per-call samples and counter differences;
- ``{"cmd": "totals"}``: cumulative counts since start (calls started/finished, late and
  skipped frames of live and ended calls): what ``soak.py`` samples over time;
- ``{"cmd": "media_call", "transport": "ari-rtp", "peer": [host, port]}`` or
  ``{"cmd": "media_call", "transport": "ari-websocket", "url": "ws://..."}``: start a call
  directly on an ARI media port (bench/media_calls.py): no ARI control plane;
- ``{"cmd": "quit"}``: close the bridge (live calls get a short grace) and exit.

Besides the calls' own ``CallStats``, the runner measures its event loop's lag (how late a
10 ms sleep wakes up), a direct view of how busy the bridge's single thread is.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
from collections import deque
from typing import Any

import yaml

from agi_bridge import cli
from agi_bridge.app import Bridge
from agi_bridge.call import Call
from agi_bridge.config import Config, Listen, load_text
from agi_bridge.eventloop import name as loop_name
from agi_bridge.eventloop import run as run_loop
from agi_bridge.eventloop import settle_heap
from agi_bridge.realtime import connector
from agi_bridge.samples import Samples

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from media_calls import MediaCalls


def bench_config(sim_url: str, max_calls: int, records_dir: str | None) -> Config:
    """The bridge's config: production defaults except where a benchmark must differ.

    Optional sections (HTTP listener, call records) are set only when this version of the
    package has them: ports are ephemeral so that nothing collides with a running bridge,
    and records go to the benchmark's temporary directory.
    """
    fields = {f.name for f in dataclasses.fields(Config)}
    listen: dict[str, Any] = {"audiosocket": "127.0.0.1:0", "fastagi": "127.0.0.1:0"}
    listen_keys = {f.name for f in dataclasses.fields(Listen)}
    if "http" in listen_keys:
        listen["http"] = "127.0.0.1:0"
    if "audiosocket_unregistered" in listen_keys:
        listen["audiosocket_unregistered"] = "default_agent"  # synthetic callers, no FastAGI
    data: dict[str, Any] = {
        "listen": listen,
        "ami": {"enabled": False},
        "realtime": {"provider": "url", "url": sim_url, "connect_timeout_s": 20},
        "agents": {
            "default": {
                "greeting": "Greet the caller.",
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
            }
        },
        "limits": {"max_calls": max_calls, "max_call_s": 3600, "hangup_drain_timeout_s": 5},
    }
    if "records" in fields:
        if records_dir:
            data["records"] = {"dir": records_dir}
        else:
            data["records"] = {"enabled": False}
    return load_text(yaml.safe_dump(data), "bench")


COUNTERS = (
    "frames_in",
    "frames_out",
    "audio_frames_out",
    "underruns",
    "dropped_ms",
    "appends_sent",
    "barge_ins",
    "truncates_sent",
)
SAMPLES = ("frame_times", "frame_to_send_ms", "delta_to_frame_ms", "turn_latency_ms")
LAG_INTERVAL_S = 0.010


def setup_logging(level: str, path: str | None) -> None:
    handler = logging.FileHandler(path, encoding="utf-8") if path else None
    cli.setup_logging(level, "text", handler)


def pacer_counts(call: Call) -> tuple[int, int]:
    pacer = getattr(call, "_pacer", None)
    if pacer is None:
        return 0, 0
    return int(pacer.late_frames), int(pacer.skipped_frames)


def reset_samples(stats: Any, name: str, size: int) -> None:
    """Empty one sample ring of a call and make room for ``size`` values, in place: the
    call's playout pump holds its own reference to ``frame_times``, so a new object
    assigned here would never be written to."""
    ring = getattr(stats, name)
    if isinstance(ring, Samples):
        ring.__init__(size)  # type: ignore[misc]
    else:  # a deque in older versions of the package
        setattr(stats, name, deque(maxlen=size))


class Runner:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.ended_late = 0  # pacer counts of calls that ended (totals)
        self.ended_skipped = 0
        self.marked_at: float | None = None
        self.baseline: dict[int, dict[str, float]] = {}
        self.loop_lag_ms: deque[float] = deque(maxlen=10_000)

    async def watch_loop_lag(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_INTERVAL_S)
            self.loop_lag_ms.append((time.monotonic() - before - LAG_INTERVAL_S) * 1000)

    def observe(self, call: Any, kind: str, data: dict[str, Any]) -> None:
        if kind == "end":
            late, skipped = pacer_counts(call)
            self.ended_late += late
            self.ended_skipped += skipped

    def totals(self) -> dict[str, Any]:
        live = [pacer_counts(call) for call in self.bridge.calls.values()]
        return {
            **self.calls(),
            "late_frames": self.ended_late + sum(late for late, _ in live),
            "skipped_frames": self.ended_skipped + sum(skipped for _, skipped in live),
        }

    def counters(self, call: Call) -> dict[str, float]:
        out = {name: float(getattr(call.stats, name)) for name in COUNTERS}
        out["late_frames"], out["skipped_frames"] = pacer_counts(call)
        return out

    def calls(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for call in self.bridge.calls.values():
            states[call.state.value] = states.get(call.state.value, 0) + 1
        return {
            "active": len(self.bridge.calls),
            "states": states,
            "finished": self.bridge.finished_calls,
        }

    def mark(self, window_s: float) -> dict[str, Any]:
        # room for the whole window (plus slack) at 50 frames/s and 25 appends/s
        frames = int(window_s * 50 * 1.5) + 500
        self.baseline = {}
        for key, call in self.bridge.calls.items():
            self.baseline[key] = self.counters(call)
            for name in SAMPLES:
                reset_samples(call.stats, name, frames)
        self.loop_lag_ms.clear()
        self.marked_at = time.monotonic()
        return {"t": self.marked_at, "calls": len(self.baseline)}

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        calls = []
        for key, call in self.bridge.calls.items():
            base = self.baseline.get(key)
            if base is None:
                continue  # connected after the mark: not measured
            counters = self.counters(call)
            entry: dict[str, Any] = {
                "call_id": call.call_id,
                "state": call.state.value,
                **{name: counters[name] - base[name] for name in counters},
            }
            for name in SAMPLES:
                entry[name] = [round(v, 6) for v in getattr(call.stats, name)]
            calls.append(entry)
        return {
            "t": now,
            "marked_at": self.marked_at,
            "measured_calls": len(self.baseline),
            "alive_measured_calls": len(calls),
            "calls": calls,
            "loop_lag_ms": [round(v, 3) for v in self.loop_lag_ms],
            **self.calls(),
        }


def reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> None:
    setup_logging(args.log_level, args.log_file)
    cfg = bench_config(args.sim_url, args.max_calls, args.records_dir)
    runners: list[Runner] = []  # the runner needs the bridge, the bridge its observer

    def observe(call: Any, kind: str, data: dict[str, Any]) -> None:
        for runner in runners:
            runner.observe(call, kind, data)

    bridge = Bridge(cfg, connect=connector(cfg.realtime, url=args.sim_url), observers=(observe,))
    runner = Runner(bridge)
    media_calls = MediaCalls(bridge)
    runners.append(runner)
    await bridge.start()
    settle_heap()  # as agi-bridge serve does
    lag_task = asyncio.create_task(runner.watch_loop_lag())
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    reply(
        {
            "ready": True,
            "pid": os.getpid(),
            "audiosocket_port": bridge.audiosocket.port,
            "fastagi_port": bridge.fastagi.port,
            "loop": loop_name(),
        }
    )
    try:
        while line := await stdin.readline():
            request = json.loads(line)
            cmd = request.get("cmd")
            if cmd == "calls":
                reply(runner.calls())
            elif cmd == "mark":
                reply(runner.mark(float(request.get("window_s", 20))))
            elif cmd == "stats":
                reply(runner.stats())
            elif cmd == "totals":
                reply(runner.totals())
            elif cmd == "media_call":
                reply(await media_calls.start(request))
            elif cmd == "media_calls":
                reply(media_calls.summary())
            elif cmd == "quit":
                break
            else:
                reply({"error": f"unknown command {cmd!r}"})
    finally:
        lag_task.cancel()
        await media_calls.close(grace=args.grace)
        await bridge.close(grace=args.grace)
    reply({"bye": True})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sim-url", required=True, help="the simulator's websocket URL")
    p.add_argument("--max-calls", type=int, default=2000)
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-file", help="default: stderr")
    p.add_argument("--records-dir", help="where call records go (default: records off)")
    p.add_argument("--loop", default="asyncio", help="asyncio | uvloop | auto")
    p.add_argument("--grace", type=float, default=2.0, help="seconds for live calls at quit")
    return p.parse_args(argv)


if __name__ == "__main__":
    try:
        args = parse_args()
        run_loop(main(args), args.loop)
    except KeyboardInterrupt:
        sys.exit(130)
