"""Shutdown drains instead of cutting calls: new calls are refused at once (FastAGI and
AudioSocket), live calls may finish, the rest go to the dialplan's fallback; `serve`
exits 0 on SIGTERM without a traceback. Real sockets, real bridge, a real process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from agi_bridge.protocol import audiosocket as asock
from agi_bridge.simulator import Scenario, Simulator

from .conftest import BridgeFactory
from .helpers import agi_request, registered_caller, until
from .test_listener_hardening import _refused_call


async def test_drain_refuses_new_calls_and_lets_live_ones_finish(
    start_bridge: BridgeFactory,
) -> None:
    bridge, events = await start_bridge()
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        await until(lambda: any(caller.heard.pcm), 15, "the greeting")
        drain = asyncio.create_task(bridge.drain(timeout=3.0))
        await asyncio.sleep(0.1)
        # new calls: refused at once, both ways in
        start = time.monotonic()
        assert "AGI_BRIDGE_UUID" not in await agi_request(bridge.fastagi.port)
        first, rest = await asyncio.to_thread(_refused_call, bridge.audiosocket.port)
        assert first == asock.hangup_frame() and rest == b""
        assert time.monotonic() - start < 2.0
        # the live call goes on meanwhile: frames keep coming
        heard = len(caller.heard.pcm)
        await asyncio.sleep(1.0)
        assert len(caller.heard.pcm) - heard >= 30 * 320 and not caller.closed.is_set()
        # and is handed to the fallback (hangup frame) when the drain time is over
        assert await asyncio.wait_for(drain, 10) == 1
        await asyncio.wait_for(caller.closed.wait(), 5)
        assert caller.heard.hangup_at is not None
    finally:
        await caller.close()
    await until(lambda: events.of("end"), 5, "the end event")
    assert events.of("end")[0]["reason"] == "shutdown"


async def test_drain_ends_early_when_the_calls_are_done(start_bridge: BridgeFactory) -> None:
    bridge, events = await start_bridge()
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    await until(lambda: any(caller.heard.pcm), 15, "the greeting")
    drain = asyncio.create_task(bridge.drain(timeout=30.0))
    await asyncio.sleep(0.2)
    caller.hangup()  # the caller is done
    start = time.monotonic()
    assert await asyncio.wait_for(drain, 10) == 0
    assert time.monotonic() - start < 5.0
    await caller.close()
    assert events.of("end")[0]["reason"] == "caller_hangup"


async def test_healthz_says_draining(start_bridge: BridgeFactory) -> None:
    bridge, _ = await start_bridge()
    await bridge.drain(timeout=0.1)
    healthy, checks = bridge.monitoring.health()
    assert not healthy and checks["accepting"]["ok"] is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_drains_on_sigterm_and_exits_0(tmp_path: Path, simulator: Simulator) -> None:
    simulator.scenario = Scenario(greeting="Hello, thanks for calling. " * 20)
    ports = {name: _free_port() for name in ("agi", "as")}
    conf = tmp_path / "bridge.yaml"
    conf.write_text(
        f"""
listen: {{audiosocket: "127.0.0.1:{ports["as"]}", fastagi: "127.0.0.1:{ports["agi"]}", http: ""}}
ami: {{enabled: false}}
records: {{enabled: false}}
realtime: {{provider: url, url: "{simulator.url}"}}
limits: {{drain_timeout_s: 2}}
"""
    )
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agi_bridge",
        "--log-format",
        "json",
        "serve",
        "-c",
        str(conf),
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    lines: list[str] = []

    async def read_log() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            lines.append(line.decode())

    reading = asyncio.create_task(read_log())
    try:
        await until(lambda: any(" ready " in line for line in lines), 30, "the bridge")
        caller = await registered_caller(ports["agi"], ports["as"])
        try:
            await until(lambda: any(caller.heard.pcm), 15, "the greeting")
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(1.0)
            assert not caller.closed.is_set()  # still talking during the drain
            await asyncio.wait_for(caller.closed.wait(), 10)
            assert caller.heard.hangup_at is not None  # handed to the fallback
        finally:
            await caller.close()
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await reading
    text = "".join(lines)
    assert "Traceback" not in text
    messages = [json.loads(line)["message"] for line in lines if line.startswith("{")]
    assert any("handed to the dialplan's fallback" in m for m in messages)
    assert any(m == "stopped" for m in messages)
