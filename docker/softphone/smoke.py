#!/usr/bin/env python3
"""Smoke test of the whole stack: one scripted SIP call to the agent, PASS or FAIL.

The `softphone` service of docker/compose.yaml (profile `smoke`, `make smoke`) runs this
inside its container; tests/docker runs the same script on the host against the tested
Asterisk and the bridge started the way the containers start them. Standard library only,
plus the programs baresip, espeak-ng and sox.

What one run does:

1. makes the caller's microphone: LISTEN_FIRST s of silence (the agent greets), a sentence
   spoken by espeak-ng (8 kHz mono via sox), then LISTEN_AFTER s of silence (the answer);
2. reads the bridge's /metrics (when --bridge-metrics is given);
3. dials EXTENSION as a phone of asterisk-config/pjsip.conf with baresip, which plays the
   microphone file, records what it hears, and hangs up when the file ends;
4. checks: the call was established; Asterisk did not hang up on the caller (the dialplan's
   fallback hangs up after its apology); what the caller heard has speech energy while it
   was listening to the greeting and again after it spoke (20 ms windows above -40 dBFS);
   and, with --bridge-metrics, that the bridge counted the call as a normal end
   (caller_hangup/agent_hangup) and at least one turn (the caller's speech reached the
   model and an answer came back).

Exit status 0 when every check passed, 1 when one failed, 2 on a usage or setup error.
Every option has an environment variable (SMOKE_*), listed by --help.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path

SAMPLE_RATE = 8000
WINDOW_MS = 20
SPEECH_DBFS = -40.0  # G.711 speech sits around -30..-15 dBFS, line silence far below
MIN_SPEECH_S = 0.5  # per listening window
NORMAL_ENDS = ("caller_hangup", "agent_hangup")

DEFAULTS = {
    "asterisk": ("SMOKE_ASTERISK", "asterisk"),
    "sip_port": ("SMOKE_SIP_PORT", "5060"),
    "user": ("SMOKE_USER", "6002"),
    "password": ("SMOKE_PASSWORD", "agi-bridge-6002"),
    "extension": ("SMOKE_EXTENSION", "100"),
    "say": ("SMOKE_SAY", "Hello, what are your opening hours on Saturday?"),
    "listen_first": ("SMOKE_LISTEN_FIRST", "5"),
    "listen_after": ("SMOKE_LISTEN_AFTER", "7"),
    "bridge_metrics": ("SMOKE_BRIDGE_METRICS", ""),
    "sip_listen": ("SMOKE_SIP_LISTEN", "0.0.0.0:5062"),
    "rtp_ports": ("SMOKE_RTP_PORTS", "10100-10199"),
    "workdir": ("SMOKE_WORKDIR", ""),
    "wait": ("SMOKE_WAIT", "60"),
}


@dataclasses.dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.detail}"


# --- audio ---------------------------------------------------------------------------------


def read_pcm16(path: Path) -> tuple[array.array[int], int]:
    """Mono 16-bit PCM samples of a wav file, and its sample rate."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(
                f"{path}: need mono 16-bit PCM, got {w.getnchannels()} channel(s) "
                f"of {8 * w.getsampwidth()} bit"
            )
        rate = w.getframerate()
        samples = array.array("h")
        samples.frombytes(w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples, rate


def write_pcm16(path: Path, samples: array.array[int], rate: int = SAMPLE_RATE) -> None:
    data = array.array("h", samples)
    if sys.byteorder == "big":
        data.byteswap()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())


def window_levels(samples: array.array[int], rate: int, window_ms: int = WINDOW_MS) -> list[float]:
    """RMS level in dBFS of each ``window_ms`` window."""
    n = rate * window_ms // 1000
    levels = []
    for start in range(0, len(samples) - n + 1, n):
        chunk = samples[start : start + n]
        rms = math.sqrt(sum(s * s for s in chunk) / n) / 32768.0
        levels.append(20.0 * math.log10(max(rms, 1e-9)))
    return levels


def active_seconds(
    levels: list[float],
    t1: float,
    t2: float,
    threshold: float = SPEECH_DBFS,
    window_ms: int = WINDOW_MS,
) -> float:
    """Seconds of windows louder than ``threshold`` between t1 and t2 (file time)."""
    first = max(0, int(t1 * 1000 / window_ms))
    last = max(first, int(t2 * 1000 / window_ms))
    return sum(1 for level in levels[first:last] if level > threshold) * window_ms / 1000.0


# --- baresip output and bridge metrics -------------------------------------------------------


@dataclasses.dataclass
class PhoneLog:
    established: bool
    ended: bool
    ended_by_phone: bool  # baresip hung up itself at the end of its microphone file
    close_reason: str | None


def parse_phone_log(text: str) -> PhoneLog:
    established = "Call established" in text
    ended = bool(re.search(r"terminated \(duration|Call with .* terminated|call: terminate", text))
    close = re.search(r"session closed:\s*(.*)", text)
    return PhoneLog(
        established=established,
        ended=ended,
        ended_by_phone="end of file)" in text,
        close_reason=close.group(1).strip() if close else None,
    )


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


_WORKER = re.compile(r'worker="\d+",?')


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {"name{labels}": value} (comments skipped), summed over the
    bridge's workers (``serve --workers N`` labels each sample with ``worker``)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        if m:
            labels = _WORKER.sub("", m.group(2) or "").replace(",}", "}")
            key = m.group(1) + ("" if labels == "{}" else labels)
            with contextlib.suppress(ValueError):
                out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


def calls_by_outcome(metrics: dict[str, float]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        m = re.fullmatch(r'agi_bridge_calls_total\{outcome="([^"]*)"\}', key)
        if m:
            out[m.group(1)] = value
    return out


def turns(metrics: dict[str, float]) -> float:
    return metrics.get("agi_bridge_turn_latency_seconds_count", 0.0)


# --- the checks ------------------------------------------------------------------------------


@dataclasses.dataclass
class Timeline:
    """The microphone file: silence, the caller's sentence, silence (seconds)."""

    listen_first: float
    speech: float
    listen_after: float

    @property
    def speech_end(self) -> float:
        return self.listen_first + self.speech

    @property
    def total(self) -> float:
        return self.listen_first + self.speech + self.listen_after


def analyze(
    phone_log: str,
    recording: Path | None,
    timeline: Timeline,
    metrics_before: dict[str, float] | None = None,
    metrics_after: dict[str, float] | None = None,
) -> list[Check]:
    """Every check of one smoke call (see the module docstring)."""
    log = parse_phone_log(phone_log)
    checks = [
        Check(
            "call established",
            log.established,
            "baresip: Call established" if log.established else "the call was not answered",
        ),
        Check(
            "caller stayed on the line",
            log.established and log.ended_by_phone,
            "the phone hung up at the end of its microphone file"
            if log.ended_by_phone
            else f"the call ended early (far end: {log.close_reason or 'no reason logged'}): "
            "the dialplan's fallback, or the agent hung up",
        ),
    ]
    if recording is None or not recording.exists():
        checks.append(Check("agent speech heard", False, "baresip recorded nothing"))
    else:
        samples, rate = read_pcm16(recording)
        levels = window_levels(samples, rate)
        heard = len(samples) / rate
        greeting = active_seconds(levels, 0.5, timeline.listen_first)
        answer = active_seconds(levels, timeline.speech_end + 0.3, timeline.total)
        checks.append(
            Check(
                "greeting heard",
                greeting >= MIN_SPEECH_S,
                f"{greeting:.2f} s of speech in the first {timeline.listen_first:.1f} s "
                f"(need {MIN_SPEECH_S} s above {SPEECH_DBFS:.0f} dBFS; {heard:.1f} s recorded)",
            )
        )
        checks.append(
            Check(
                "answer heard",
                answer >= MIN_SPEECH_S,
                f"{answer:.2f} s of speech after the caller spoke "
                f"(from {timeline.speech_end + 0.3:.1f} s; need {MIN_SPEECH_S} s)",
            )
        )
    if metrics_before is not None:
        if metrics_after is None:
            checks.append(Check("bridge counted the call", False, "no /metrics after the call"))
        else:
            before, after = calls_by_outcome(metrics_before), calls_by_outcome(metrics_after)
            new = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
            new = {k: v for k, v in new.items() if v > 0}
            normal = sum(new.get(k, 0.0) for k in NORMAL_ENDS)
            checks.append(
                Check(
                    "bridge counted the call",
                    normal >= 1 and set(new) <= set(NORMAL_ENDS),
                    f"new calls by outcome: {new or 'none'}",
                )
            )
            new_turns = turns(metrics_after) - turns(metrics_before)
            checks.append(
                Check(
                    "bridge saw a turn",
                    new_turns >= 1,
                    f"{new_turns:.0f} turn(s): caller speech -> model -> agent audio",
                )
            )
    return checks


# --- running the call ------------------------------------------------------------------------


def resolve(host: str, wait_s: float) -> str:
    """An IPv4 address for ``host`` (baresip and Asterisk are happiest with IP literals)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return str(socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0])
        except socket.gaierror:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def fetch_metrics(url: str, wait_s: float) -> dict[str, float]:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return parse_metrics(response.read().decode())
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def make_microphone(say: str, workdir: Path, listen_first: float, listen_after: float) -> Timeline:
    raw, speech = workdir / "say-raw.wav", workdir / "say.wav"
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(raw), say],
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        ["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(speech)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    samples, _ = read_pcm16(speech)
    mic = array.array("h", bytes(2 * round(listen_first * SAMPLE_RATE)))
    mic.extend(samples)
    mic.extend(array.array("h", bytes(2 * round(listen_after * SAMPLE_RATE))))
    write_pcm16(workdir / "microphone.wav", mic)
    return Timeline(listen_first, len(samples) / SAMPLE_RATE, listen_after)


def write_baresip_config(
    workdir: Path, args: argparse.Namespace, asterisk_ip: str, microphone: Path
) -> None:
    rec = workdir / "rec"
    rec.mkdir(exist_ok=True)
    (workdir / "config").write_text(
        f"""\
poll_method\t\tepoll
sip_listen\t\t{args.sip_listen}
call_local_timeout\t120
audio_player\t\talsa,null
audio_source\t\taufile,{microphone}
audio_alert\t\talsa,null
audio_level\t\tno
ausrc_format\t\ts16
auplay_format\t\ts16
auenc_format\t\ts16
audec_format\t\ts16
audio_buffer\t\t20-160
ausrc_srate\t\t{SAMPLE_RATE}
auplay_srate\t\t{SAMPLE_RATE}
ausrc_channels\t\t1
auplay_channels\t\t1
rtp_ports\t\t{args.rtp_ports}
rtp_timeout\t\t0
jitter_buffer_delay\t5-10
rtcp_mux\t\tno
module_path\t\t/usr/lib/baresip/modules
module\t\t\tg711.so
module\t\t\taufile.so
module\t\t\talsa.so
module\t\t\tsndfile.so
module_tmp\t\tuuid.so
module_tmp\t\taccount.so
module_app\t\tmenu.so
snd_path\t\t{rec}
"""
    )
    (workdir / "accounts").write_text(
        f"<sip:{args.user}@{asterisk_ip}:{args.sip_port}>;auth_pass={args.password};regint=0;"
        "audio_codecs=PCMU;answermode=manual;ptime=20\n"
    )
    (workdir / "contacts").write_text("")


def run_call(args: argparse.Namespace, workdir: Path, asterisk_ip: str, timeline: Timeline) -> str:
    """Dial, wait until the call has ended (or timed out), stop baresip; its output."""
    uri = f"sip:{args.extension}@{asterisk_ip}:{args.sip_port}"
    runtime = int(timeline.total + 30)
    cmd = ["baresip", "-f", str(workdir), "-e", f"/dial {uri}", "-t", str(runtime)]
    if shutil.which("stdbuf"):
        cmd = ["stdbuf", "-oL", "-eL", *cmd]
    print(f"smoke: dialing {uri} as {args.user} ({timeline.total:.1f} s microphone)", flush=True)
    lines: list[str] = []
    ended = threading.Event()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        start_new_session=True,
    )

    def read() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            for line in raw.decode(errors="replace").replace("\r", "\n").splitlines():
                line = line.strip()
                if not line or re.fullmatch(r"\[\d+:\d\d:\d\d\] audio=.*", line):
                    continue
                lines.append(line)
                if args.verbose:
                    print(f"  baresip: {line}", flush=True)
                if re.search(r"terminated \(duration|Call with .* terminated", line):
                    ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ended.wait(timeline.total + 25)
    time.sleep(0.5)  # let baresip close its recordings
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # our own child, by pid
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    reader.join(5)
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env_help = ", ".join(f"{var} ({default!r})" for var, default in DEFAULTS.values())
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=f"Environment defaults: {env_help}"
    )

    def default(key: str) -> str:
        var, value = DEFAULTS[key]
        return os.environ.get(var, value)

    p.add_argument("--asterisk", default=default("asterisk"), help="Asterisk host or address")
    p.add_argument("--sip-port", type=int, default=int(default("sip_port")))
    p.add_argument("--user", default=default("user"), help="a phone of pjsip.conf")
    p.add_argument("--password", default=default("password"))
    p.add_argument("--extension", default=default("extension"), help="100: agent 'default'")
    p.add_argument("--say", default=default("say"), help="what the caller says")
    p.add_argument("--listen-first", type=float, default=float(default("listen_first")))
    p.add_argument("--listen-after", type=float, default=float(default("listen_after")))
    p.add_argument(
        "--bridge-metrics",
        default=default("bridge_metrics"),
        help="the bridge's /metrics URL; empty: skip the bridge checks",
    )
    p.add_argument("--sip-listen", default=default("sip_listen"), help="baresip's SIP address")
    p.add_argument("--rtp-ports", default=default("rtp_ports"), help="baresip's RTP range")
    p.add_argument("--workdir", default=default("workdir"), help="keep the files here")
    p.add_argument("--wait", type=float, default=float(default("wait")), help="setup wait, s")
    p.add_argument("-v", "--verbose", action="store_true", help="print baresip's output")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [t for t in ("baresip", "espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        print(f"smoke: missing programs: {', '.join(missing)}", file=sys.stderr)
        return 2
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="agi-bridge-smoke-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        asterisk_ip = resolve(args.asterisk, args.wait)
    except OSError as exc:
        print(f"smoke: cannot resolve {args.asterisk}: {exc}", file=sys.stderr)
        return 2
    metrics_before = None
    if args.bridge_metrics:
        try:
            metrics_before = fetch_metrics(args.bridge_metrics, args.wait)
        except OSError as exc:
            print(f"smoke: bridge metrics {args.bridge_metrics}: {exc}", file=sys.stderr)
            return 2
    timeline = make_microphone(args.say, workdir, args.listen_first, args.listen_after)
    write_baresip_config(workdir, args, asterisk_ip, workdir / "microphone.wav")
    phone_log = run_call(args, workdir, asterisk_ip, timeline)
    (workdir / "baresip.log").write_text(phone_log + "\n")
    recordings = sorted((workdir / "rec").glob("*-dec.wav"))
    metrics_after = None
    if metrics_before is not None:
        # the bridge ends its side when Asterisk closes the AudioSocket: give it a moment
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                metrics_after = fetch_metrics(args.bridge_metrics, 0)
            done = metrics_after is not None and sum(
                calls_by_outcome(metrics_after).values()
            ) > sum(calls_by_outcome(metrics_before).values())
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    checks = analyze(
        phone_log, recordings[-1] if recordings else None, timeline, metrics_before, metrics_after
    )
    for check in checks:
        print(check.line(), flush=True)
    ok = all(c.ok for c in checks)
    result = {
        "ok": ok,
        "checks": [dataclasses.asdict(c) for c in checks],
        "recording": str(recordings[-1]) if recordings else None,
        "timeline": dataclasses.asdict(timeline),
    }
    (workdir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    if not ok:
        print("smoke: FAILED; baresip's output:\n" + phone_log, flush=True)
    print(f"smoke: {'PASSED' if ok else 'FAILED'} (files in {workdir})", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
