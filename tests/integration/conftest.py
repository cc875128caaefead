"""Fixtures for integration tests: the real bridge on real sockets, the simulator, and
virtual callers playing Asterisk's side of AudioSocket (UUID, then 20 ms frames)."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agi_bridge.app import Bridge
from agi_bridge.call import Call
from agi_bridge.config import Config, load_text
from agi_bridge.simulator import Scenario, Simulator
from agi_bridge.virtual_caller import espeak

BASE_CONFIG = """
listen:
  audiosocket: "127.0.0.1:0"
  fastagi: "127.0.0.1:0"
  http: "127.0.0.1:0"
  audiosocket_unregistered: default_agent  # virtual callers without FastAGI
ami: {enabled: false}
records: {enabled: false}
realtime: {provider: url, url: "ws://unused", connect_timeout_s: 3}
agents:
  default:
    greeting: Greet the caller.
    turn_detection: {type: server_vad, silence_duration_ms: 400}
limits: {hangup_drain_timeout_s: 10}
"""


def make_config(**agent_overrides: Any) -> Config:
    cfg = load_text(BASE_CONFIG, "test.yaml")
    agent = dataclasses.replace(cfg.agents["default"], **agent_overrides)
    return dataclasses.replace(cfg, agents={"default": agent})


class Events:
    """Observer that keeps every call event the bridge emits, for assertions."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, call: Call, kind: str, data: dict[str, Any]) -> None:
        self.items.append((call.call_id, kind, data))

    def of(self, kind: str, call_id: str | None = None) -> list[dict[str, Any]]:
        return [d for c, k, d in self.items if k == kind and (call_id is None or c == call_id)]


@pytest.fixture(autouse=True)
def _admin_token_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The admin token file (admin.token_file, under ~) goes to a fresh HOME per test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("AGI_BRIDGE_ADMIN_TOKEN", raising=False)
    return home


def admin_headers() -> dict[str, str]:
    """The Authorization header for the admin API of a bridge started in this test."""
    from pathlib import Path

    token = (Path.home() / ".config/agi-bridge/admin.token").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(Scenario(greeting="Hello, thanks for calling.")) as sim:
        yield sim


BridgeFactory = Callable[..., Any]


@pytest.fixture
async def start_bridge(simulator: Simulator) -> AsyncIterator[BridgeFactory]:
    """``bridge, events = await start_bridge(config=None, **bridge_kwargs)``: a bridge wired
    to the simulator (``bridge_kwargs`` go to Bridge, e.g. ``ami=fake``)."""
    from agi_bridge.realtime import connector

    bridges: list[Bridge] = []

    async def start(config: Config | None = None, **kwargs: Any) -> tuple[Bridge, Events]:
        cfg = config or make_config()
        events = Events()
        bridge = Bridge(
            cfg,
            connect=connector(cfg.realtime, url=simulator.url),
            observers=(events,),
            **kwargs,
        )
        await bridge.start()
        bridges.append(bridge)
        return bridge, events

    yield start
    for b in bridges:
        await b.close(grace=2)


@pytest.fixture(scope="session")
def utterance() -> bytes:
    """A spoken sentence (espeak-ng), slin16 8 kHz: what a caller's microphone sends."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required: run `make test-env` (scripts/install-system-deps.sh)")
    return espeak("Hello, I would like to check the status of my order please.")
