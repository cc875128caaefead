"""Soak: N calls at a time through one bridge process for M minutes, new calls replacing
ended ones, sampling the bridge's RSS, open files and late frames over time.

    python bench/soak.py --calls 20 --minutes 10 [--call-seconds 30] [--interval 10]
    make soak SOAK_CALLS=20 SOAK_MINUTES=10

The same parts as bench_calls.py: the Realtime simulator (a local test double) in its
own process, the bridge alone in its process (bridge_runner.py), virtual callers here
over AudioSocket on loopback. Each caller speaks every few seconds and hangs up after
about ``--call-seconds``; a new caller takes its place. Every ``--interval`` seconds one
line: elapsed, live/finished calls, RSS, open file descriptors, late/skipped frames.
At the end a summary (first / last / max of each) and, with ``--out``, all samples as
JSON. A leak shows as RSS or descriptors that keep growing while the call count is flat.
Not run in CI: it is long by design.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_calls import (
    HOST,
    UTTERANCE,
    BridgeProcess,
    Processes,
    agi_bridge_command,
    free_port,
    rss_kib,
    scenario_yaml,
    wait_port,
)

from agi_bridge.virtual_caller import VirtualCaller, espeak


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def one_slot(
    port: int, utterance: bytes, call_s: float, deadline: float, rng: random.Random
) -> int:
    """Calls one after another until *deadline*; returns how many it made."""
    made = 0
    await asyncio.sleep(rng.uniform(0, 3))  # stagger the first calls
    while time.monotonic() < deadline:
        caller = VirtualCaller(HOST, port, keep_audio=False)
        try:
            await caller.connect()
            made += 1
            end = min(deadline, time.monotonic() + call_s * rng.uniform(0.7, 1.3))
            next_say = time.monotonic() + rng.uniform(3, 6)
            while time.monotonic() < end and not caller.closed.is_set():
                if time.monotonic() >= next_say and not caller.speaking:
                    caller.say(utterance)
                    next_say = time.monotonic() + rng.uniform(6, 10)
                await asyncio.sleep(0.2)
        except OSError:
            await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(Exception):
                await caller.close()
        await asyncio.sleep(0.5)
    return made


def summary(samples: list[dict[str, Any]], key: str) -> str:
    values = [s[key] for s in samples]
    return f"{key}: first {values[0]}, last {values[-1]}, max {max(values)}"


async def run(args: argparse.Namespace) -> int:
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="agi-bridge-soak-"))
    (workdir / "scenario.yaml").write_text(scenario_yaml())
    port = free_port()
    samples: list[dict[str, Any]] = []
    try:
        with (workdir / "simulator.log").open("ab") as out:
            sim = await procs.spawn(
                *agi_bridge_command(),
                "--log-level",
                "WARNING",
                "simulate",
                "--host",
                HOST,
                "--port",
                str(port),
                "--scenario",
                str(workdir / "scenario.yaml"),
                stdout=out,
                stderr=out,
            )
        await wait_port(port, sim)
        sim_url = f"ws://{HOST}:{port}/v1/realtime"
        bridge = await BridgeProcess.start(procs, sim_url, workdir / "bridge.log", "WARNING")
        utterance = espeak(UTTERANCE)
        t0 = time.monotonic()
        deadline = t0 + args.minutes * 60
        rng = random.Random(1)
        slots = [
            asyncio.create_task(
                one_slot(bridge.audiosocket_port, utterance, args.call_seconds, deadline, rng)
            )
            for _ in range(args.calls)
        ]
        print(
            f"soak: {args.calls} calls at a time for {args.minutes:g} min, "
            f"~{args.call_seconds:g} s each; bridge pid {bridge.pid}; logs in {workdir}",
            flush=True,
        )
        print("   t_s  live  finished   rss_kib  open_fds  late  skipped", flush=True)
        while True:
            totals = await bridge.request(cmd="totals")
            sample = {
                "t_s": round(time.monotonic() - t0, 1),
                "live": totals["active"],
                "finished": totals["finished"],
                "rss_kib": rss_kib(bridge.pid),
                "open_fds": open_files(bridge.pid),
                "late_frames": totals["late_frames"],
                "skipped_frames": totals["skipped_frames"],
            }
            samples.append(sample)
            print(
                f"{sample['t_s']:6.0f} {sample['live']:5d} {sample['finished']:9d} "
                f"{sample['rss_kib']:9d} {sample['open_fds']:9d} "
                f"{sample['late_frames']:5d} {sample['skipped_frames']:8d}",
                flush=True,
            )
            if time.monotonic() >= deadline and all(t.done() for t in slots):
                break
            await asyncio.sleep(args.interval)
        made = sum(t.result() for t in slots)
        await asyncio.sleep(2.0)  # calls closed: what is left open now stays open
        after = {"rss_kib": rss_kib(bridge.pid), "open_fds": open_files(bridge.pid)}
        print(f"\n{made} calls made; after the last call: {after}")
        for key in ("rss_kib", "open_fds", "late_frames", "skipped_frames"):
            print(summary(samples, key))
        if args.out:
            report = json.dumps({"args": vars(args), "samples": samples, "after": after}, indent=1)
            await asyncio.to_thread(Path(args.out).write_text, report)
            print(f"samples: {args.out}")
        await bridge.quit(procs)
        return 0
    finally:
        await procs.stop_all()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=20, help="calls at a time (default 20)")
    p.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    p.add_argument("--call-seconds", type=float, default=30.0, help="average call length")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--out", help="write every sample as JSON to this file")
    return asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
