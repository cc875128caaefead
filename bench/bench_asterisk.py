"""Benchmark: N concurrent calls through the real Asterisk 22 (chroot) into the bridge.

    .venv/bin/python bench/bench_asterisk.py [--calls 1,10] [--seconds 20] [--json out.json]
    make bench-asterisk                  # the quick set (N = 1, 10)
    make bench-asterisk CALLS=1,10,30,100,200 SECONDS=30

Uses Asterisk's fixed ports (SIP 5060, AMI 5038): run it under the e2e lock
(``flock /tmp/agi-e2e.lock ...``; the Makefile target does). Per N: a fresh simulator
(``agi-bridge simulate``), bridge (``agi-bridge serve``, its own process) and Asterisk; N
calls originated over AMI into the SIP loop (asterisk_rig.py) that speak espeak-ng
speech into the shipped dialplan; when all N are up, a warm-up, then a measurement
window: /proc of the bridge (all its processes), of Asterisk and of the simulator; a
capture of the RTP Asterisk sends to the phones; the machine's outside load. Then the
calls are hung up, and the bridge's late/skipped frame counters read from /metrics.

A window with outside load above ``--max-other-load`` is marked DISTURBED; ``--compare
OLD.json`` refuses to compare rows when either side was disturbed. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.e2e.harness
sys.path.insert(0, str(Path(__file__).resolve().parent))

import itertools

import asterisk_rig as rig
from bench_calls import (
    GREETING,
    MS_PER_CHAR,
    REPLY,
    RESPONSE_LATENCY_MS,
    UTTERANCE,
    VAD_SILENCE_MS,
    Processes,
    agi_bridge_command,
    all_processes,
    free_port,
    machine_busy,
    other_load,
    percentile,
    scenario_yaml,
    wait_port,
)

from tests.e2e import harness

HOST = "127.0.0.1"
LEADS = 8  # distinct first pauses, so that the calls do not all speak at once
DISTURBED_PCT = 35.0
AFTER_CALLS_S = 3.0  # after the last call: the bridge returns freed memory after 1 s


WORKER_LABEL = re.compile(r'worker="\d+",?')


def metrics(ports: list[int]) -> dict[str, float]:
    """The bridge's /metrics as {name{labels}: value}, summed over its workers (with
    ``--workers N`` the supervisor's front labels each sample with its worker)."""
    out: dict[str, float] = {}
    for port in ports:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                name = WORKER_LABEL.sub("", name).replace("{}", "")
                with contextlib.suppress(ValueError):
                    out[name] = out.get(name, 0.0) + float(value)
    return out


def deviation_stats(times: list[float]) -> dict[str, float]:
    devs = [abs((b - a) * 1000 - 20.0) for a, b in itertools.pairwise(times)]
    return {
        "p50": percentile(devs, 50) or 0.0,
        "p99": percentile(devs, 99) or 0.0,
        "max": max(devs, default=0.0),
        "n": float(len(devs)),
    }


def pacing_at_phone(streams: dict[Any, list[float]]) -> dict[str, Any]:
    """Per stream |Δ − 20 ms|; the summary gives the median and the worst stream."""
    per = [deviation_stats(ts) for ts in streams.values() if len(ts) > 10]
    if not per:
        return {"streams": 0}
    p99s = sorted(s["p99"] for s in per)
    return {
        "streams": len(per),
        "p50_median_stream": percentile([s["p50"] for s in per], 50),
        "p99_median_stream": percentile(p99s, 50),
        "p99_worst_stream": p99s[-1],
        "max_worst_stream": max(s["max"] for s in per),
        "streams_p99_over_2ms": sum(v > 2.0 for v in p99s),
        "intervals": int(sum(s["n"] for s in per)),
    }


class Run:
    """One N: simulator, bridge, Asterisk, calls, window, teardown."""

    def __init__(self, n: int, args: argparse.Namespace, workdir: Path, procs: Processes):
        self.n, self.args, self.procs = n, args, procs
        self.dir = workdir / f"n{n}"
        self.dir.mkdir(parents=True, exist_ok=True)

    async def start_simulator(self) -> tuple[asyncio.subprocess.Process, str]:
        scenario = self.dir / "scenario.yaml"
        scenario.write_text(scenario_yaml())
        port = free_port()
        with (self.dir / "simulator.log").open("ab") as out:
            sim = await self.procs.spawn(
                *agi_bridge_command(),
                "--log-level",
                "WARNING",
                "simulate",
                "--host",
                HOST,
                "--port",
                str(port),
                "--scenario",
                str(scenario),
                stdout=out,
                stderr=out,
            )
        await wait_port(port, sim)
        return sim, f"ws://{HOST}:{port}/v1/realtime"

    async def start_bridge(self, sim_url: str) -> tuple[asyncio.subprocess.Process, dict[str, int]]:
        ports = {"fastagi": free_port(), "audiosocket": free_port(), "http": free_port()}
        secret = self.dir / "ami-secret"
        secret.write_text(harness.AMI_TEST_SECRET + "\n")
        cfg = rig.bridge_config(
            self.dir / "bridge.yaml",
            sim_url=sim_url,
            fastagi=f"{HOST}:{ports['fastagi']}",
            audiosocket=f"{HOST}:{ports['audiosocket']}",
            http=f"{HOST}:{ports['http']}",
            secret_file=secret,
            max_calls=max(self.n * 2, 10),
        )
        cmd = [*agi_bridge_command(), "--log-level", self.args.bridge_log_level, "serve"]
        cmd += ["-c", str(cfg)]
        if self.args.workers:  # 0: leave it out (a version without --workers)
            cmd += ["--workers", str(self.args.workers)]
        if self.args.loop:
            cmd += ["--loop", self.args.loop]
        with (self.dir / "bridge.log").open("ab") as out:
            env = {**os.environ, rig.KEY_ENV: "bench-simulator-key"}
            bridge = await self.procs.spawn(*cmd, stdout=out, stderr=out, env=env)
        self.http_ports = [ports["http"]]  # one front, however many workers
        for port in self.http_ports:
            await wait_port(port, bridge)
        return bridge, ports

    def speech(self, asterisk: harness.Asterisk) -> tuple[str, list[str]]:
        """The phone's utterance + silence (one period) and the lead-in silences, written
        into Asterisk's run directory; returns their paths as Asterisk sees them."""
        utter_s = harness.wav_duration(harness.espeak_wav(UTTERANCE, self.dir / "u.wav"))
        reply_s = len(REPLY) * MS_PER_CHAR / 1000
        period = utter_s + (VAD_SILENCE_MS + RESPONSE_LATENCY_MS) / 1000 + reply_s + 1.0
        talk = asterisk.run_dir / "bench-talk.wav"
        harness.fit_wav(self.dir / "u.wav", talk, period)
        greeting_s = len(GREETING) * MS_PER_CHAR / 1000
        leads = []
        for i in range(LEADS):
            lead = asterisk.run_dir / f"bench-lead-{i}.wav"
            harness.fit_wav(None, lead, greeting_s + 0.5 + period * i / LEADS)
            leads.append(str(asterisk.run_in_root / lead.stem))
        return str(asterisk.run_in_root / talk.stem), leads

    async def originate(self, ami: harness.AmiClient, talk: str, leads: list[str]) -> None:
        rng = random.Random(self.n)
        for i in range(self.n):
            await ami.action(
                "Originate",
                Channel="PJSIP/100@bench-loop-out",
                Context=rig.PHONE_CONTEXT,
                Exten="s",
                Priority="1",
                Async="true",
                CallerID=f"bench <{7000 + i}>",
                Variable=f"BENCH_TALK={talk},BENCH_LEAD={leads[rng.randrange(LEADS)]}",
                timeout=10,
            )
            await asyncio.sleep(self.args.stagger)

    async def wait_active(self, timeout: float) -> float:
        started = time.monotonic()
        while True:
            active = metrics(self.http_ports).get("agi_bridge_active_calls", 0)
            if active >= self.n:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"only {active:.0f} of {self.n} calls reached the bridge")
            await asyncio.sleep(0.25)

    async def execute(self) -> dict[str, Any]:
        args, n = self.args, self.n
        sim, sim_url = await self.start_simulator()
        bridge, ports = await self.start_bridge(sim_url)
        env = {"AGI_BRIDGE_AGI_PORT": str(ports["fastagi"])}
        env["AGI_BRIDGE_AUDIOSOCKET_PORT"] = str(ports["audiosocket"])
        asterisk = harness.Asterisk(
            self.dir, env=env, extra_config=rig.asterisk_config(ports["fastagi"], 0)
        )
        ami: harness.AmiClient | None = None
        capture: rig.Capture | None = None
        try:
            await asyncio.to_thread(asterisk.start)
            assert asterisk.proc is not None
            await asyncio.sleep(1.0)
            idle = {
                "bridge": rig.sample_tree(bridge.pid),
                "asterisk": rig.sample_tree(asterisk.proc.pid),
            }
            talk, leads = self.speech(asterisk)
            ami = await self.ami_login()
            t_ramp = time.monotonic()
            await self.originate(ami, talk, leads)
            await self.wait_active(30 + n * 0.3)
            ramp_s = time.monotonic() - t_ramp
            print(
                f"N={n}: all calls up after {ramp_s:.1f} s; warm-up {args.warmup:g} s", flush=True
            )
            await asyncio.sleep(args.warmup)

            pids = {"bridge": bridge.pid, "asterisk": asterisk.proc.pid, "simulator": sim.pid}
            load_before = rig.loadavg()
            capture = await asyncio.to_thread(rig.Capture(self.dir / "rtp.pcap").start)
            ours = {p for pid in pids.values() for p in rig.tree(pid)}
            ours |= {capture.pid or 0, *rig.tree(capture.pid or 0), *rig.tree(os.getpid())}
            procs0 = all_processes()
            s0 = {k: rig.sample_tree(p) for k, p in pids.items()}
            busy0 = machine_busy()
            t0 = time.monotonic()
            print(f"N={n}: measuring {args.seconds:g} s ...", flush=True)
            peak = dict.fromkeys(pids, 0)
            fds = dict.fromkeys(pids, 0)
            while (left := t0 + args.seconds - time.monotonic()) > 0:
                await asyncio.sleep(min(1.0, left))
                for k, p in pids.items():
                    s = rig.sample_tree(p)
                    peak[k] = max(peak[k], s.rss_kib)
                    fds[k] = max(fds[k], s.fds)
            t1 = time.monotonic()
            s1 = {k: rig.sample_tree(p) for k, p in pids.items()}
            busy1 = machine_busy()
            procs1 = all_processes()
            load_during = rig.loadavg()
            await asyncio.to_thread(capture.stop)
            rtp_dest = self.rtp_destinations(asterisk)
            live = metrics(self.http_ports).get("agi_bridge_active_calls", 0)
            # hang up: the late/skipped counters of a call are added when it ends
            await ami.action(
                "Hangup", Channel="/^PJSIP\\/bench-loop-out-/", timeout=10, check=False
            )
            await self.wait_ended(30)
            final = metrics(self.http_ports)
            # the bridge hands freed pages back a second after its last call ends
            # (agi_bridge/heap_return.py); "after" is what it still holds then
            await asyncio.sleep(AFTER_CALLS_S)
            after = rig.sample_tree(bridge.pid)
        finally:
            if capture is not None:
                await asyncio.to_thread(capture.stop)
            if ami is not None:
                await ami.close()
            await asyncio.to_thread(asterisk.stop)
            await self.procs.stop(bridge, timeout=15)
            await self.procs.stop(sim)

        wall = t1 - t0
        packets = await asyncio.to_thread(rig.udp_packets, capture.path)
        streams = rig.streams_to(packets, rtp_dest)
        cpu = {k: (s1[k].cpu_s - s0[k].cpu_s) / wall * 100 for k in pids}
        outside = other_load(procs0, procs1, ours, wall)
        disturbed = outside["total_pct"] > args.max_other_load
        return {
            "calls": n,
            "window_s": round(wall, 2),
            "ramp_s": round(ramp_s, 2),
            "workers": args.workers,
            "calls_alive_at_end": int(live),
            "bridge_cpu_per_call_pct": cpu["bridge"] / n,
            "asterisk_cpu_per_call_pct": cpu["asterisk"] / n,
            "cpu_pct": {k: round(v, 2) for k, v in cpu.items()},
            "bridge_rss_mib": {
                "idle": round(idle["bridge"].rss_kib / 1024, 1),
                "with_calls": round(s1["bridge"].rss_kib / 1024, 1),
                "peak": round(peak["bridge"] / 1024, 1),
                "after_calls": round(after.rss_kib / 1024, 1),
            },
            "bridge_kib_per_call": (s1["bridge"].rss_kib - idle["bridge"].rss_kib) / n,
            "bridge_kib_per_call_peak": (peak["bridge"] - idle["bridge"].rss_kib) / n,
            "asterisk_rss_mib": round(s1["asterisk"].rss_kib / 1024, 1),
            "open_fds": {"bridge": fds["bridge"], "asterisk": fds["asterisk"]},
            "bridge_processes": s1["bridge"].pids,
            "pacing_at_phone_ms": pacing_at_phone(streams),
            "late_frames": final.get("agi_bridge_late_frames_total", -1),
            "skipped_frames": final.get("agi_bridge_skipped_frames_total", -1),
            "underruns": final.get("agi_bridge_playout_underruns_total", -1),
            # the agent answered the phone's speech this often (speech reached the model)
            "turns_answered": final.get("agi_bridge_turn_latency_seconds_count", -1),
            "frames_out": final.get("agi_bridge_frames_out_total", -1),
            "outside_load": {
                "other_processes_pct_of_core": outside["total_pct"],
                "busiest": outside["top"],
                "machine_busy_pct": round(
                    (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * 100, 1
                ),
                "loadavg_before": load_before,
                "loadavg_during": load_during,
                "disturbed": disturbed,
            },
        }

    async def ami_login(self, timeout: float = 20.0) -> harness.AmiClient:
        """AMI comes up a little after "fully booted"."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await harness.AmiClient.connect(events=False)
            except (OSError, harness.AmiError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    def rtp_destinations(self, asterisk: harness.Asterisk) -> set[int]:
        ports = set()
        for line in asterisk.log_text("full").splitlines():
            if rig.LOG_TAG in line:
                addr = line.rsplit(rig.LOG_TAG, 1)[1].strip()
                with contextlib.suppress(ValueError):
                    ports.add(int(addr.rsplit(":", 1)[1]))
        return ports

    async def wait_ended(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while metrics(self.http_ports).get("agi_bridge_active_calls", 0) > 0:
            if time.monotonic() > deadline:
                print("WARNING: calls still live at the bridge after the hang-up", flush=True)
                return
            await asyncio.sleep(0.25)


# ------------------------------------------------------------------------------- report

ROWS: list[tuple[str, Any]] = [
    ("bridge CPU per call (% of a core)", lambda r: f"{r['bridge_cpu_per_call_pct']:.3f}"),
    ("bridge CPU total (% of a core)", lambda r: f"{r['cpu_pct']['bridge']:.1f}"),
    ("Asterisk CPU per call (% of a core)", lambda r: f"{r['asterisk_cpu_per_call_pct']:.3f}"),
    ("Asterisk CPU total (% of a core)", lambda r: f"{r['cpu_pct']['asterisk']:.1f}"),
    ("simulator CPU (% of a core)", lambda r: f"{r['cpu_pct']['simulator']:.1f}"),
    (
        "bridge RSS idle/calls/after (MiB)",
        lambda r: "{idle}/{with_calls}/{after_calls}".format(**r["bridge_rss_mib"]),
    ),
    ("bridge memory per call (KiB)", lambda r: f"{r['bridge_kib_per_call']:.0f}"),
    (
        "  at the window's peak (KiB)",
        lambda r: f"{r.get('bridge_kib_per_call_peak', float('nan')):.0f}",
    ),
    (
        "open fds bridge / Asterisk",
        lambda r: f"{r['open_fds']['bridge']}/{r['open_fds']['asterisk']}",
    ),
    ("phone pacing streams", lambda r: f"{r['pacing_at_phone_ms'].get('streams', 0)}"),
    (
        "  |Δ−20| p50, median stream (ms)",
        lambda r: _f(r["pacing_at_phone_ms"].get("p50_median_stream")),
    ),
    (
        "  |Δ−20| p99, median stream (ms)",
        lambda r: _f(r["pacing_at_phone_ms"].get("p99_median_stream")),
    ),
    (
        "  |Δ−20| p99, worst stream (ms)",
        lambda r: _f(r["pacing_at_phone_ms"].get("p99_worst_stream")),
    ),
    (
        "  |Δ−20| max, worst stream (ms)",
        lambda r: _f(r["pacing_at_phone_ms"].get("max_worst_stream")),
    ),
    (
        "  streams with p99 > 2 ms",
        lambda r: f"{r['pacing_at_phone_ms'].get('streams_p99_over_2ms', '-')}",
    ),
    (
        "late / skipped frames (bridge)",
        lambda r: f"{r['late_frames']:.0f} / {r['skipped_frames']:.0f}",
    ),
    ("playout underruns", lambda r: f"{r['underruns']:.0f}"),
    ("caller turns answered (all calls)", lambda r: f"{r['turns_answered']:.0f}"),
    (
        "outside load (% of a core)",
        lambda r: f"{r['outside_load']['other_processes_pct_of_core']:.1f}",
    ),
    ("machine busy (% of all cores)", lambda r: f"{r['outside_load']['machine_busy_pct']:.1f}"),
    (
        "loadavg before -> during",
        lambda r: (
            f"{r['outside_load']['loadavg_before'][0]:.2f}->{r['outside_load']['loadavg_during'][0]:.2f}"
        ),
    ),
    ("DISTURBED by outside load", lambda r: "YES" if r["outside_load"]["disturbed"] else "no"),
]


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def table(results: list[dict[str, Any]]) -> str:
    cells = [[fmt(r) for r in results] for _, fmt in ROWS]
    # one space at least between columns, however wide a cell (three processes' RSS)
    width = max([17, *(len(c) + 2 for row in cells for c in row)])
    head = f"{'':42}" + "".join(f"{'N=' + str(r['calls']):>{width}}" for r in results)
    lines = [head, "-" * len(head)]
    for (label, _), row in zip(ROWS, cells, strict=True):
        lines.append(f"{label:42}" + "".join(f"{c:>{width}}" for c in row))
    return "\n".join(lines)


def compare(old_path: Path, results: list[dict[str, Any]]) -> str:
    """Bridge CPU per call, old vs new, per N; refused where either window was disturbed."""
    old = {r["calls"]: r for r in json.loads(old_path.read_text())["results"]}
    lines = [f"comparison with {old_path}:"]
    for r in results:
        o = old.get(r["calls"])
        if o is None:
            continue
        if o["outside_load"]["disturbed"] or r["outside_load"]["disturbed"]:
            lines.append(f"  N={r['calls']}: REFUSED (a window was taken under outside load)")
            continue
        a, b = o["bridge_cpu_per_call_pct"], r["bridge_cpu_per_call_pct"]
        lines.append(f"  N={r['calls']}: bridge CPU per call {a:.3f} -> {b:.3f} % ({b / a:.2f}x)")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> int:
    harness.require_tools(("chroot", "dumpcap", "espeak-ng", "sox"))
    procs = Processes()
    results = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-asterisk-") as tmp:
        workdir = Path(args.keep_logs or tmp)
        try:
            for n in args.calls:
                results.append(await Run(n, args, workdir, procs).execute())
        finally:
            await procs.stop_all()
    report = table(results)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\nagi_bridge through Asterisk, {now}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; window {args.seconds:g} s\n{report}"
    )
    print(f"total run time {time.monotonic() - started:.0f} s")
    if any(r["outside_load"]["disturbed"] for r in results):
        print("WARNING: some windows were taken under outside load: do not compare them.")
    if args.compare:
        print(compare(Path(args.compare), results))
    if args.json:
        Path(args.json).write_text(  # noqa: ASYNC240 - once, after the run
            json.dumps({"when": now, "args": vars(args), "results": results}, indent=1)
        )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", default="1,10", type=lambda s: [int(v) for v in s.split(",")])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--stagger", type=float, default=0.05)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="agi-bridge serve --workers (default 1, the per-process figures of bench/README;"
        " 0: do not pass the option, i.e. serve's own default: one per core)",
    )
    p.add_argument("--loop", default="", help="agi-bridge serve --loop (default: its own)")
    p.add_argument("--max-other-load", type=float, default=DISTURBED_PCT)
    p.add_argument("--bridge-log-level", default="INFO")
    p.add_argument("--json")
    p.add_argument("--compare", help="an earlier --json file: compare undisturbed rows")
    p.add_argument("--keep-logs", help="a directory for logs, capture and configs")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
