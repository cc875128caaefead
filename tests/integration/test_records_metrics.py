"""Call records, recording, metrics, health and webhook over real sockets.

The bridge talks to the simulator, a virtual caller plays Asterisk's side; the records
are read back from disk, /metrics and /healthz over HTTP, the webhook is a real aiohttp
server, and one bridge runs as a subprocess that is killed with SIGKILL mid-call.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from agi_bridge.app import Bridge
from agi_bridge.audio import SLIN_FRAME_BYTES
from agi_bridge.cli import main
from agi_bridge.config import Config, Price, load_text
from agi_bridge.records import EVENTS_FILE, SUMMARY_FILE, WAV_FILE, read_events, token_kinds
from agi_bridge.simulator import Scenario, Simulator, ToolCall, Turn
from agi_bridge.virtual_caller import VirtualCaller
from agi_bridge.webhook import WebhookSender

from .conftest import BridgeFactory, make_config
from .test_ami import SECRET, USER, FakeAmi
from .test_call_flow import voiced_frames


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """main() configures the root logger; put it back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# a price table unlike the defaults, to show the cost comes from the config
TEST_PRICE = Price(
    audio_in=100.0,
    cached_audio_in=10.0,
    audio_out=200.0,
    text_in=20.0,
    cached_text_in=2.0,
    text_out=50.0,
)


async def until(pred: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or pred}")
        await asyncio.sleep(0.02)


def with_records(cfg: Config, root: Path, *, wav: bool = False, **changes: Any) -> Config:
    return dataclasses.replace(
        cfg,
        records=dataclasses.replace(cfg.records, enabled=True, dir=str(root), wav=wav),
        prices={**cfg.prices, "gpt-realtime": TEST_PRICE},
        **changes,
    )


def the_call_dir(root: Path) -> Path:
    dirs = list(root.glob("*/*/*/*_*"))
    assert len(dirs) == 1, dirs
    return dirs[0]


async def http_get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric_name: str, **labels: str
) -> float:
    return values.get((metric_name, tuple(sorted(labels.items()))), 0.0)


async def test_a_call_leaves_a_complete_record_and_metrics(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes, tmp_path: Path
) -> None:
    simulator.scenario = Scenario(
        greeting="Hello, thanks for calling.",
        turns=[
            Turn(
                "Your order ships tomorrow. Goodbye.",
                caller_text="order status",
                tool_calls=(ToolCall("hangup", {"reason": "caller done"}),),
            )
        ],
    )
    cfg = with_records(make_config(), tmp_path)
    bridge, events = await start_bridge(cfg)
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
        await until(lambda: events.of("agent_transcript"), what="greeting")
        caller.say(utterance)
        await asyncio.wait_for(caller.closed.wait(), 20)  # the agent hangs up
    await until(lambda: events.of("end"), what="call end")

    path = the_call_dir(tmp_path)
    assert path.name.endswith("_" + str(caller.uuid))
    lines = (path / EVENTS_FILE).read_text().splitlines()
    log = [json.loads(line) for line in lines]
    kinds = [e["event"] for e in log]
    # every event the call emitted, in order, with times that only go forward
    assert kinds == [kind for _, kind, _ in events.items]
    assert kinds[0] == "start" and kinds[-1] == "end"
    ts = [e["t"] for e in log]
    assert ts == sorted(ts)
    for kind in (
        "speech_started",
        "speech_stopped",
        "caller_transcript",
        "agent_transcript",
        "response_done",
        "turn_latency",
        "tool_call",
        "tool_result",
    ):
        assert kind in kinds, kind
    order = [kinds.index(k) for k in ("speech_stopped", "turn_latency", "tool_result", "end")]
    assert order == sorted(order)
    start = log[0]
    assert start["call_id"] == str(caller.uuid)
    assert start["agent"] == "default" and start["model"] == "gpt-realtime"
    tool = next(e for e in log if e["event"] == "tool_call")
    assert tool["name"] == "hangup" and json.loads(tool["arguments"]) == {"reason": "caller done"}
    result = next(e for e in log if e["event"] == "tool_result")
    assert result["result"]["ok"] is True
    assert log[-1]["reason"] == "agent_hangup" and log[-1]["detail"] == "caller done"

    summary = json.loads((path / SUMMARY_FILE).read_text())
    assert summary["call_id"] == str(caller.uuid)
    assert summary["outcome"] == "agent_hangup"
    assert summary["turns"]["caller"] >= 1 and summary["turns"]["agent"] >= 2
    # usage summed over every response.done, cost from the configured price table
    expected = dict.fromkeys(summary["tokens"], 0)
    for done in events.of("response_done"):
        for kind, n in token_kinds(done["usage"]).items():
            expected[kind] += n
    assert summary["tokens"] == expected
    assert expected["audio_out"] > 0 and expected["text_in"] > 0
    cost = sum(n * getattr(TEST_PRICE, kind) for kind, n in expected.items()) / 1e6
    # the caller's transcription is billed apart, by duration, at its own model's price
    transcribed = sum(e["usage"]["seconds"] for e in events.of("transcription_usage"))
    assert transcribed > 1.0
    asr = transcribed / 60 * cfg.prices["gpt-live-transcribe"].audio_minute
    assert summary["costs"]["realtime"] == pytest.approx(cost, abs=1e-6)
    assert summary["costs"]["transcription"] == pytest.approx(asr, abs=1e-6)
    assert summary["cost_usd"] == pytest.approx(cost + asr, abs=1e-6)
    assert summary["cost_notes"] == []
    assert summary["transcription"]["model"] == "gpt-live-transcribe"
    assert summary["price"] == "gpt-realtime"
    # latency per turn: what the call measured
    assert summary["latency_ms"]["turns"] == [e["ms"] for e in events.of("turn_latency")]
    assert len(summary["latency_ms"]["turns"]) >= 1
    assert 0 < summary["latency_ms"]["turns"][0] < 3000
    assert summary["duration_s"] > 1 and summary["stats"]["frames_out"] > 50

    # /metrics shows the call
    assert bridge.monitoring.http is not None
    status, text = await http_get(bridge.monitoring.http.port, "/metrics")
    assert status == 200
    values = samples(text)
    assert metric(values, "agi_bridge_calls_total", outcome="agent_hangup") == 1
    assert metric(values, "agi_bridge_active_calls") == 0
    assert metric(values, "agi_bridge_frames_out_total") == summary["stats"]["frames_out"]
    assert metric(values, "agi_bridge_frames_in_total") == summary["stats"]["frames_in"] > 50
    assert metric(values, "agi_bridge_turn_latency_seconds_count") == len(
        summary["latency_ms"]["turns"]
    )
    assert metric(values, "agi_bridge_tool_calls_total", name="hangup", result="ok") == 1
    assert (
        metric(values, "agi_bridge_tokens_total", model="gpt-realtime", kind="audio_out")
        == expected["audio_out"]
    )
    assert metric(
        values, "agi_bridge_estimated_cost_usd_total", model="gpt-realtime"
    ) == pytest.approx(cost, abs=1e-6)
    assert metric(
        values, "agi_bridge_estimated_cost_usd_total", model="gpt-live-transcribe"
    ) == pytest.approx(asr, abs=1e-6)
    assert "agi_bridge_late_frames_total" in text
    assert "agi_bridge_playout_underruns_total" in text
    assert metric(values, "agi_bridge_reconnects_total", target="ami") == 0

    # the CLI reads it back
    assert main(["show", str(caller.uuid)[:8], "--dir", str(tmp_path)]) == 0


async def test_recording_is_stereo_aligned_and_silent_after_a_barge_in_cut(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes, tmp_path: Path
) -> None:
    long_reply = "A" + "a" * 150 + "h"  # ~10 s of continuous agent audio
    simulator.scenario = Scenario(greeting="", turns=[Turn(long_reply), Turn("Sure.")])
    cfg = with_records(make_config(greeting=""), tmp_path, wav=True)
    bridge, events = await start_bridge(cfg)
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
        caller.say(utterance)
        await until(lambda: voiced_frames(caller.heard.pcm), what="agent reply", timeout=15)
        await asyncio.sleep(2.0)  # two seconds of the reply, then the caller talks over it
        caller.say(utterance)
        await until(lambda: events.of("barge_in"), what="barge-in", timeout=5)
        await until(lambda: len(events.of("agent_transcript")) >= 1, what="next answer", timeout=15)
        await asyncio.sleep(0.5)
    await until(lambda: events.of("end"), what="call end")
    path = the_call_dir(tmp_path)
    summary = json.loads((path / SUMMARY_FILE).read_text())
    with wave.open(str(path / WAV_FILE)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        nframes = w.getnframes()
        data = np.frombuffer(w.readframes(nframes), dtype="<i2").reshape(-1, 2)
    stats = summary["stats"]
    # one agent sample frame per 20 ms tick the playout clock released
    released = (stats["frames_out"] + stats["skipped_frames"]) * 160
    assert released <= nframes <= released + 8 * 160
    assert abs(nframes / 8000 - summary["duration_s"]) < 1.0
    left = data[:, 0].astype("<i2").tobytes()
    right = data[:, 1].astype("<i2").tobytes()
    # the agent channel is exactly what Asterisk was sent
    heard = bytes(caller.heard.pcm)
    if stats["skipped_frames"] == 0:
        common = min(len(heard), len(right))
        assert common > len(heard) * 0.9
        assert right[:common] == heard[:common]
    # the interrupted reply stops at the cut: silence until the next answer
    barge = events.of("barge_in")[0]
    voiced = voiced_frames(right)
    first = voiced[0]
    run_end = first
    while run_end + 1 in voiced:
        run_end += 1
    assert abs((run_end - first + 1) * 20 - barge["audio_end_ms"]) <= 40
    later = [i for i in voiced if i > run_end]
    gap_frames = (later[0] - run_end) if later else len(right) // SLIN_FRAME_BYTES - run_end
    assert gap_frames * 20 >= 200, "the agent channel went on after the cut"
    # the 3+ s of the reply that were dropped are not in the recording (only the short
    # answers that followed the caller's speech are)
    assert barge["dropped_ms"] > 3000
    assert len(later) * 20 < barge["dropped_ms"] - 1500
    # the caller channel has the caller's speech, on the same timeline: the barge-in
    # utterance starts shortly before the cut (the VAD needs some speech to fire)
    caller_voiced = voiced_frames(left)
    assert len(caller_voiced) > 0.5 * len(voiced_frames(utterance)) * 2
    second = [i for i in caller_voiced if i > first]
    assert second, "no caller speech during the agent's reply"
    assert 0 <= run_end - second[0] <= 60  # within 1.2 s


async def test_healthz_follows_the_ami_connection(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeAmi()
    await fake.start()
    monkeypatch.setenv("AGI_BRIDGE_AMI_SECRET", SECRET)
    cfg = make_config()
    cfg = dataclasses.replace(
        cfg,
        ami=dataclasses.replace(cfg.ami, enabled=True, port=fake.port, username=USER),
    )
    from agi_bridge.realtime import connector

    bridge = Bridge(cfg, connect=connector(cfg.realtime, url=simulator.url))
    other = Bridge(make_config(), connect=connector(cfg.realtime, url=simulator.url))
    try:
        await bridge.start()
        await other.start()
        assert bridge.monitoring.http is not None
        port = bridge.monitoring.http.port
        status, text = await http_get(port, "/healthz")
        body = json.loads(text)
        assert status == 200 and body["status"] == "ok", body
        assert {"process", "audiosocket", "fastagi", "ami"} <= set(body["checks"])
        values = samples((await http_get(port, "/metrics"))[1])
        assert metric(values, "agi_bridge_ami_connected") == 1

        await fake.stop()  # Asterisk goes away
        await until(lambda: not bridge.ami or not bridge.ami.connected, what="AMI drop")
        status, text = await http_get(port, "/healthz")
        body = json.loads(text)
        assert status == 503 and body["failing"] == ["ami"], body
        assert (
            metric(samples((await http_get(port, "/metrics"))[1]), "agi_bridge_ami_connected") == 0
        )

        await fake.start(port=cfg.ami.port)  # and comes back: the client reconnects
        await until(
            lambda: bridge.ami is not None and bridge.ami.connected, timeout=15, what="reconnect"
        )
        status, _ = await http_get(port, "/healthz")
        assert status == 200
        values = samples((await http_get(port, "/metrics"))[1])
        assert metric(values, "agi_bridge_reconnects_total", target="ami") == 1

        # a second bridge in the same process has its own registry, no AMI check
        assert other.monitoring.http is not None
        status, text = await http_get(other.monitoring.http.port, "/healthz")
        assert status == 200 and "ami" not in json.loads(text)["checks"]
    finally:
        await bridge.close(grace=1)
        await other.close(grace=1)
        await fake.stop()


async def test_healthz_fails_when_a_listener_is_down(start_bridge: BridgeFactory) -> None:
    bridge, _ = await start_bridge()
    await bridge.fastagi.close()
    assert bridge.monitoring.http is not None
    status, text = await http_get(bridge.monitoring.http.port, "/healthz")
    assert status == 503 and json.loads(text)["failing"] == ["fastagi"]


# ------------------------------------------------------------------------- webhook


class Hook:
    """A webhook receiver on a real socket: fails the first ``fail`` requests with 503."""

    def __init__(self, fail: int = 0, delay: float = 0.0) -> None:
        self.fail = fail
        self.delay = delay
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.attempts = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.attempts <= self.fail:
            return web.Response(status=503)
        self.bodies.append(await request.json())
        self.headers.append(dict(request.headers))
        return web.Response(status=204)

    async def __aenter__(self) -> Hook:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


async def test_webhook_posts_the_summary_with_retries(
    start_bridge: BridgeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_HOOK_TOKEN", "t0ken")
    async with Hook(fail=2) as hook:
        cfg = make_config()
        cfg = dataclasses.replace(
            cfg,
            webhook=dataclasses.replace(
                cfg.webhook, url=hook.url, retry_delay_s=0.05, token_env="TEST_HOOK_TOKEN"
            ),
        )
        bridge, events = await start_bridge(cfg)
        async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
            await until(lambda: events.of("agent_transcript"), what="greeting")
            caller.hangup()
        await until(lambda: hook.bodies, what="webhook delivery")
        body = hook.bodies[0]
        assert body["call_id"] == str(caller.uuid) and body["outcome"] == "caller_hangup"
        assert body["tokens"]["audio_out"] > 0 and body["stats"]["frames_out"] > 0
        assert hook.attempts == 3
        assert hook.headers[0]["Authorization"] == "Bearer t0ken"
        assert hook.headers[0]["Content-Type"] == "application/json"
        assert bridge.monitoring.http is not None
        values = samples((await http_get(bridge.monitoring.http.port, "/metrics"))[1])
        assert metric(values, "agi_bridge_webhook_deliveries_total", result="delivered") == 1


async def test_webhook_queue_is_bounded_and_close_does_not_wait_for_a_slow_receiver() -> None:
    async with Hook(delay=30) as hook:
        cfg = load_text(f"webhook: {{url: '{hook.url}', queue_size: 2, timeout_s: 20}}")
        sender = WebhookSender(cfg.webhook)
        await sender.start()
        sender.submit({"call_id": "c0"})
        await until(lambda: hook.attempts == 1, what="first attempt")  # c0 now hangs
        started = time.monotonic()
        for i in range(1, 6):
            sender.submit({"call_id": f"c{i}"})  # never blocks
        assert time.monotonic() - started < 0.1
        assert sender.dropped == 3  # two queued behind the one in flight, three dropped
        started = time.monotonic()
        await sender.close(grace=0.2)
        assert time.monotonic() - started < 3


# ------------------------------------------------------------ killed mid-call


@pytest.fixture
async def bridge_process(
    simulator: Simulator, tmp_path: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[dict[str, Any]], Path]]:
    records = tmp_path / "records"
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"""
listen: {{audiosocket: "127.0.0.1:0", fastagi: "127.0.0.1:0", http: "127.0.0.1:0",
          audiosocket_unregistered: default_agent}}
ami: {{enabled: false}}
realtime: {{provider: url, url: "{simulator.url}", connect_timeout_s: 5}}
records: {{dir: "{records}", wav: true}}
"""
    )
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}  # any key: the simulator wants one
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agi_bridge",
        "--log-format",
        "json",
        "serve",
        "-c",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    lines: list[dict[str, Any]] = []

    async def read_log() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            try:
                lines.append(json.loads(line))  # --log-format json
            except json.JSONDecodeError:  # not a log record (a warning printed by Python)
                lines.append({"message": line.decode(errors="replace"), "call_id": None})

    reader = asyncio.create_task(read_log())
    try:
        yield proc, lines, records
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(reader, 5)


async def test_killed_bridge_leaves_a_valid_partial_log(
    simulator: Simulator,
    bridge_process: tuple[asyncio.subprocess.Process, list[dict[str, Any]], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    proc, lines, records = bridge_process
    simulator.scenario = Scenario(greeting="Hello, thanks for calling.")

    def port() -> int | None:
        for line in lines:
            if line["message"].startswith("AudioSocket listening on"):
                return int(line["message"].rsplit(":", 1)[1])
        return None

    await until(lambda: port() is not None, timeout=20, what="bridge start")
    audiosocket = port()
    assert audiosocket is not None
    async with VirtualCaller("127.0.0.1", audiosocket) as caller:

        def logged() -> list[str]:
            files = list(records.glob(f"*/*/*/*_{caller.uuid}/{EVENTS_FILE}"))
            return files[0].read_text().splitlines() if files else []

        await until(lambda: any("agent_transcript" in e for e in logged()), what="greeting")
        await asyncio.sleep(1.2)  # let the recording pass a header flush
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
        await asyncio.wait_for(caller.closed.wait(), 10)
    assert proc.returncode == -signal.SIGKILL

    [path] = list(records.glob(f"*/*/*/*_{caller.uuid}"))
    events = [json.loads(line) for line in (path / EVENTS_FILE).read_text().splitlines()]
    assert events[0]["event"] == "start" and events[0]["call_id"] == str(caller.uuid)
    assert "agent_transcript" in [e["event"] for e in events]
    assert "end" not in [e["event"] for e in events]
    assert not (path / SUMMARY_FILE).exists()
    assert read_events(path / EVENTS_FILE) == events
    with wave.open(str(path / WAV_FILE)) as w:  # readable up to the last flush
        assert w.getnchannels() == 2 and w.getnframes() >= 4000
    # the JSON log lines of the call carry its id
    call_lines = [line for line in lines if line["call_id"] == str(caller.uuid)]
    assert any("agent:" in line["message"] for line in call_lines)
    # and the CLI reads the partial record
    assert main(["calls", "--dir", str(records)]) == 0
    out = capsys.readouterr().out
    assert str(caller.uuid) in out and "unfinished" in out
    assert main(["show", str(caller.uuid), "--dir", str(records)]) == 0
    assert "did not finish" in capsys.readouterr().out
