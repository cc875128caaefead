"""The operator interface on a live call (HTTP JSON + the ``agi-bridge admin`` CLI), and
``agi-bridge check --connect`` against the simulator and a fake AMI server."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agi_bridge.app import Bridge
from agi_bridge.cli import main
from agi_bridge.config import ConfigError
from agi_bridge.simulator import Scenario, Simulator, Turn
from agi_bridge.virtual_caller import VirtualCaller

from .conftest import BridgeFactory, Events, admin_headers
from .helpers import config, registered_caller, until
from .test_ami import SECRET, USER, FakeAmi
from .test_call_flow import voiced_frames

LONG = "A" + "a" * 150 + "h"  # ~ 10 s of agent audio, streamed in ~ 2.5 s

AGENT = """
agents:
  default:
    greeting: Greet the caller.
    turn_detection: {type: server_vad, silence_duration_ms: 400}
"""


def run_main(argv: list[str]) -> int:
    """``agi-bridge ARGV`` (in a thread: it runs its own event loop), logging restored."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return main(argv)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def admin_url(bridge: Bridge) -> str:
    assert bridge.monitoring.http is not None
    return f"http://127.0.0.1:{bridge.monitoring.http.port}/admin"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call_json(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    """One admin request, with the bridge's token unless ``headers`` are given."""
    if "headers" not in kwargs:
        kwargs["headers"] = admin_headers()
    async with http.request(method, url, **kwargs) as response:
        return response.status, await response.json()


async def live_call(
    simulator: Simulator, start_bridge: BridgeFactory, scenario: Scenario
) -> tuple[Bridge, Events, VirtualCaller]:
    simulator.scenario = scenario
    bridge, events = await start_bridge(config(AGENT))
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    await until(lambda: voiced_frames(caller.heard.pcm), what="agent audio")
    return bridge, events, caller


async def test_admin_list_say_interrupt_instructions_hangup(
    simulator: Simulator, start_bridge: BridgeFactory, http: aiohttp.ClientSession
) -> None:
    bridge, events, caller = await live_call(
        simulator, start_bridge, Scenario(greeting=LONG, turns=[Turn("Noted, premium.")])
    )
    base = admin_url(bridge)
    try:
        # list
        status, body = await call_json(http, "GET", f"{base}/calls")
        assert status == 200 and body["ok"] is True
        [listed] = body["calls"]
        assert listed["id"] == str(caller.uuid)
        assert (listed["agent"], listed["caller"], listed["dnid"]) == ("default", "5551234", "100")
        assert listed["channel"] == "PJSIP/alice-00000001"
        assert listed["state"] == "active" and listed["duration_s"] >= 0
        call_url = f"{base}/calls/{caller.uuid}"

        # interrupt: the agent is one second into a ten-second greeting
        await asyncio.sleep(1.0)
        status, cut = await call_json(http, "POST", f"{call_url}/interrupt")
        assert status == 200, cut
        session = simulator.sessions[0]
        await until(lambda: session.truncates, what="truncate")
        assert any(e["type"] == "response.cancel" for e in session.received)
        assert session.truncates[0]["audio_end_ms"] == cut["audio_end_ms"]
        assert 500 <= cut["audio_end_ms"] <= 2500
        assert cut["dropped_ms"] > 3000
        assert session.responses[0].status == "cancelled"
        mark = len(caller.heard.pcm)
        await asyncio.sleep(0.5)
        assert len(voiced_frames(caller.heard.pcm[mark:])) <= 2, "the agent went quiet"
        assert events.of("operator_interrupt")[0]["audio_end_ms"] == cut["audio_end_ms"]

        # say: a system note, then the model answers
        status, body = await call_json(
            http,
            "POST",
            f"{call_url}/say",
            json={"text": "The caller is a premium customer.", "role": "system"},
        )
        assert status == 200, body
        await until(
            lambda: any(e["text"] == "Noted, premium." for e in events.of("agent_transcript")),
            what="answer",
        )
        items = [e for e in session.received if e["type"] == "conversation.item.create"]
        assert items[-1]["item"]["role"] == "system"
        assert items[-1]["item"]["content"][0]["text"] == "The caller is a premium customer."
        kinds = [e["type"] for e in session.received if e["type"] != "input_audio_buffer.append"]
        assert kinds[kinds.index("conversation.item.create") + 1] == "response.create"

        # instructions, live
        status, body = await call_json(
            http, "POST", f"{call_url}/instructions", json={"instructions": "Speak only French."}
        )
        assert status == 200, body
        await until(lambda: "\n\nSpeak only French." in session.session["instructions"])
        assert "helpful voice assistant" not in session.session["instructions"]  # replaced
        assert session.errors_sent == []

        # bad requests
        status, body = await call_json(http, "POST", f"{call_url}/say", json={"text": ""})
        assert (status, body["ok"]) == (400, False)
        assert "'text' must be a non-empty string" in body["error"]
        status, body = await call_json(http, "POST", f"{call_url}/say", data=b"[1]")
        assert status == 400
        status, body = await call_json(http, "POST", f"{base}/calls/nope/hangup")
        assert (status, body) == (404, {"ok": False, "error": "no such call"})

        # hang up: like the agent's hangup, with the AudioSocket hangup frame
        status, body = await call_json(http, "POST", f"{call_url}/hangup", json={"reason": "QA"})
        assert status == 200
        await asyncio.wait_for(caller.closed.wait(), 5)
    finally:
        await caller.close()
    assert caller.heard.hangup_at is not None
    await until(lambda: events.of("end"), what="end")
    assert (events.of("end")[0]["reason"], events.of("end")[0]["detail"]) == (
        "operator_hangup",
        "QA",
    )
    status, body = await call_json(http, "GET", f"{base}/calls")
    assert body["calls"] == []


async def test_admin_token_is_required_when_set(
    simulator: Simulator,
    start_bridge: BridgeFactory,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGI_BRIDGE_ADMIN_TOKEN", "t0k3n-for-tests")
    bridge, _ = await start_bridge(config(AGENT))
    url = f"{admin_url(bridge)}/calls"
    status, body = await call_json(http, "GET", url, headers={})
    assert (status, body["ok"]) == (401, False)
    status, _ = await call_json(http, "GET", url, headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, body = await call_json(
        http, "GET", url, headers={"Authorization": "Bearer t0k3n-for-tests"}
    )
    assert (status, body) == (200, {"ok": True, "calls": []})
    # /metrics and /healthz are not admin routes
    async with http.get(url.replace("/admin/calls", "/healthz")) as response:
        assert response.status in (200, 503)


def test_admin_on_a_public_address_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGI_BRIDGE_ADMIN_TOKEN", raising=False)
    cfg = config(AGENT)
    cfg = dataclasses.replace(cfg, listen=dataclasses.replace(cfg.listen, http="0.0.0.0:0"))
    with pytest.raises(ConfigError, match=r"listen.http: the admin interface on 0.0.0.0:0"):
        Bridge(cfg)
    monkeypatch.setenv("AGI_BRIDGE_ADMIN_TOKEN", "x")
    Bridge(cfg)  # builds; nothing is bound before start()
    monkeypatch.delenv("AGI_BRIDGE_ADMIN_TOKEN")
    Bridge(dataclasses.replace(cfg, admin=dataclasses.replace(cfg.admin, enabled=False)))


async def test_admin_cli(
    simulator: Simulator, start_bridge: BridgeFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    bridge, events, caller = await live_call(
        simulator, start_bridge, Scenario(greeting="Hello.", turns=[Turn("Sure.")])
    )
    url = admin_url(bridge).removesuffix("/admin")
    try:
        assert await asyncio.to_thread(run_main, ["admin", "--url", url, "calls"]) == 0
        line = capsys.readouterr().out.strip()
        assert line.startswith(f"{caller.uuid}  default")
        assert "caller 5551234" in line and "active" in line
        argv = ["admin", "--url", url, "say", str(caller.uuid), "hello from QA"]
        assert await asyncio.to_thread(run_main, argv) == 0
        assert capsys.readouterr().out.strip() == f"ok: say {caller.uuid}"
        await until(lambda: len(events.of("agent_transcript")) >= 2, what="answer")
        assert await asyncio.to_thread(run_main, ["admin", "--url", url, "interrupt", "x"]) == 1
        assert "HTTP 404: no such call" in capsys.readouterr().err
        argv = ["admin", "--url", url, "instructions", str(caller.uuid), "Be brief."]
        assert await asyncio.to_thread(run_main, argv) == 0
        argv = ["admin", "--url", url, "hangup", str(caller.uuid)]
        assert await asyncio.to_thread(run_main, argv) == 0
        await asyncio.wait_for(caller.closed.wait(), 5)
    finally:
        await caller.close()
    await until(lambda: events.of("end"), what="end")
    assert events.of("end")[0]["reason"] == "operator_hangup"


# ------------------------------------------------------------------------ check --connect


def write_config(path: Path, ami_port: int, url: str) -> Path:
    path.write_text(
        f"""\
ami: {{host: 127.0.0.1, port: {ami_port}, username: {USER}, action_timeout_s: 1}}
realtime: {{provider: url, url: "{url}", connect_timeout_s: 3}}
agents:
  default: {{}}
  sales: {{voice: ash, tools: [hangup]}}
""",
        encoding="utf-8",
    )
    return path


async def test_check_connect_ok(
    simulator: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeAmi()
    await fake.start()
    try:
        monkeypatch.setenv("AGI_BRIDGE_AMI_SECRET", SECRET)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        cfg = write_config(tmp_path / "bridge.yaml", fake.port, simulator.url)
        rc = await asyncio.to_thread(run_main, ["check", "-c", str(cfg), "--connect"])
    finally:
        await fake.stop()
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"OK   config {cfg}: 2 agents (default, sales), 0 routes, 0 webhook tools",
        f"OK   ami 127.0.0.1:{fake.port}: logged in as {USER}",
        "OK   realtime agent 'default': session.updated (model gpt-realtime)",
        "OK   realtime agent 'sales': session.updated (model gpt-realtime)",
    ]
    assert rc == 0
    assert len(simulator.sessions) == 2
    update = simulator.sessions[1].received[0]
    assert update["type"] == "session.update"
    assert update["session"]["audio"]["output"]["voice"] == "ash"


async def test_check_connect_reports_failures(
    simulator: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    simulator.scenario = Scenario(refuse_connect=503)
    fake = FakeAmi()
    await fake.start()
    try:
        monkeypatch.setenv("AGI_BRIDGE_AMI_SECRET", "wrong")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        cfg = write_config(tmp_path / "bridge.yaml", fake.port, simulator.url)
        rc = await asyncio.to_thread(run_main, ["check", "-c", str(cfg), "--connect"])
    finally:
        await fake.stop()
    out = capsys.readouterr().out.splitlines()
    assert rc == 1
    assert out[0].startswith("OK   config")
    assert out[1] == (
        f"FAIL ami 127.0.0.1:{fake.port}: login as {USER} failed: Authentication failed"
    )
    assert out[2].startswith("FAIL realtime agent 'default': cannot connect to ws://127.0.0.1")
    assert "503" in out[2]
    assert SECRET not in "\n".join(out)


def test_check_without_connect_and_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("agents:\n  default: {}\nroutes:\n  - {dnid: '1', agent: default}\n")
    assert run_main(["check", "-c", str(good)]) == 0
    assert capsys.readouterr().out == (
        f"OK   config {good}: 1 agent (default), 1 route, 0 webhook tools\n"
    )
    # warnings (a new voice, a model with a shutdown date) do not fail the check
    warned = tmp_path / "warned.yaml"
    warned.write_text(
        "agents:\n  default:\n    voice: juniper\n    transcription_model: whisper-1\n"
    )
    assert run_main(["check", "-c", str(warned)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith(f"WARN {warned}:3 agents.default.voice: voice 'juniper'")
    assert out[2].startswith(f"WARN {warned}:4 agents.default.transcription_model: whisper-1")
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents:\n  default: {}\nroutes:\n  - {dnid: '1', agent: sales}\n")
    assert run_main(["check", "-c", str(bad)]) == 2
    assert capsys.readouterr().err == (
        f"error: {bad}:4 routes[0].agent: unknown agent 'sales' (agents: default)\n"
    )
