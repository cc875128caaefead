"""Every core and a second bridge, through the real Asterisk 22 and the shipped dialplan.

- ``agi-bridge serve --workers 2``: calls land on both workers (FastAGI port shared), and
  each call's AudioSocket reaches the worker that registered it (AGI_BRIDGE_AUDIOSOCKET):
  every call becomes active, none falls back.
- Two bridge instances behind one Asterisk (AGI_BRIDGE_HOSTS): one is stopped mid-run.
  Its live calls end in the dialplan's fallback (logged, with a reason), every new call
  goes to the other one, and every call is accounted for: none is lost silently.

Calls are AMI Originates of ``Local/default@agi-bridge-agent`` (the ;2 half runs the
agent path, the ;1 half waits), so no SIP phone is needed; the simulator plays Realtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agi_bridge.simulator import Scenario, Simulator
from tests.e2e import harness
from tests.e2e.harness import Asterisk

pytestmark = pytest.mark.e2e

REGISTERED = re.compile(r"FastAGI call registered: call_id=(\S+) channel=(\S+)")
TO_AGENT = re.compile(r"agi-bridge: (Local/\S+;2) \(.*\) to agent")
FALLBACK = re.compile(r"agi-bridge: fallback for (\S+) agent \S+ reason ([\w-]+)")
UNAVAILABLE = re.compile(r"agi-bridge: (\S+) bridge (\S+) unavailable")


class BridgeProc:
    """``agi-bridge serve`` as its own process (its log in a file)."""

    def __init__(
        self, name: str, workdir: Path, sim_url: str, workers: int, extra: str = ""
    ) -> None:
        self.name = name
        self.agi = harness.free_port()
        self.audio = harness.free_port()
        self.log = workdir / f"bridge-{name}.log"
        self.cfg = workdir / f"bridge-{name}.yaml"
        self.workers = workers
        secret = workdir / "ami-secret"
        secret.write_text(harness.AMI_TEST_SECRET + "\n")
        self.cfg.write_text(
            f"""
listen: {{audiosocket: "127.0.0.1:{self.audio}", fastagi: "127.0.0.1:{self.agi}", http: ""}}
ami: {{host: 127.0.0.1, port: {harness.AMI_PORT}, username: agi_bridge,
      secret_file: "{secret}"}}
realtime: {{provider: url, url: "{sim_url}", connect_timeout_s: 5}}
records: {{enabled: false}}
{extra}"""
        )
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> BridgeProc:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "agi_bridge",
                "serve",
                "-c",
                str(self.cfg),
                "--workers",
                str(self.workers),
                stdout=out,
                stderr=out,
                env={**os.environ, "OPENAI_API_KEY": "sk-e2e"},  # any key: the simulator
            )
        await wait_for(lambda: self.text().count(" ready (") >= self.workers, 30, "ready")
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def registered(self) -> dict[str, str]:
        """{channel: call_id} of the calls this bridge registered."""
        return {m[2]: m[1] for m in REGISTERED.finditer(self.text())}

    def active_call_ids(self) -> set[str]:
        rx = re.compile(r"\[([0-9a-f-]{36})\] agi_bridge.call: state connecting -> active")
        return set(rx.findall(self.text()))

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            return await self.proc.wait()


async def wait_for(pred: Callable[[], object], timeout: float, what: str) -> None:
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110 - polling log files, nothing to await
            await asyncio.sleep(0.1)


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(Scenario(greeting="Hello, thanks for calling.")) as sim:
        yield sim


@pytest.fixture
async def bridges() -> AsyncIterator[list[BridgeProc]]:
    made: list[BridgeProc] = []
    yield made
    for b in made:
        if b.proc is not None and b.proc.returncode is None:
            b.proc.kill()
            await b.proc.wait()


async def originate(ami: harness.AmiClient, seconds: int) -> None:
    await ami.action(
        "Originate",
        Channel="Local/default@agi-bridge-agent",
        Application="Wait",
        Data=str(seconds),
        Async="true",
        timeout=10,
    )


def agent_channels(asterisk: Asterisk) -> list[str]:
    return TO_AGENT.findall(asterisk.log_text())


async def test_workers_take_calls_and_each_call_meets_its_registration(
    asterisk_factory: Callable[..., Asterisk],
    simulator: Simulator,
    bridges: list[BridgeProc],
    tmp_path: Path,
) -> None:
    bridge = BridgeProc("w", tmp_path, simulator.url, workers=2)
    bridges.append(bridge)
    asterisk = asterisk_factory(
        env={"AGI_BRIDGE_AGI_PORT": str(bridge.agi), "AGI_BRIDGE_HOST": "127.0.0.1"}
    )
    await asyncio.to_thread(asterisk.start)
    await bridge.start()
    ami = await harness.AmiClient.connect(events=False)
    try:
        ports: set[str] = set()
        for n in range(1, 33):  # until both workers took a call (the kernel picks)
            await originate(ami, 15)
            await wait_for(lambda n=n: len(bridge.registered()) >= n, 15, "registration")
            ports = set(
                re.findall(r"AGI_BRIDGE_AUDIOSOCKET=127\.0\.0\.1:(\d+)", _setvars(asterisk))
            )
            if len(ports) == 2:
                break
        assert ports == {str(bridge.audio), str(bridge.audio + 1)}
        calls = bridge.registered()
        await wait_for(
            lambda: set(calls.values()) <= bridge.active_call_ids(), 20, "every call active"
        )
        assert FALLBACK.findall(asterisk.log_text()) == []
    finally:
        await ami.close()
    assert await bridge.stop() == 0


async def test_with_workers_ari_runs_in_worker_0_only_and_takes_stasis_calls(
    asterisk_factory: Callable[..., Asterisk],
    simulator: Simulator,
    bridges: list[BridgeProc],
    tmp_path: Path,
) -> None:
    """Asterisk gives a Stasis application one events websocket (a second one takes it
    over): with two workers only worker 0 registers it, and Stasis calls reach it."""
    password = tmp_path / "ari-password"
    password.write_text(harness.ARI_TEST_PASSWORD + "\n")
    ari = (
        f'ari: {{enabled: true, url: "{harness.ARI_URL}", username: {harness.ARI_USER},'
        f' password_file: "{password}", media: rtp}}\n'
    )
    bridge = BridgeProc("ari", tmp_path, simulator.url, workers=2, extra=ari)
    bridges.append(bridge)
    asterisk = asterisk_factory(
        env={"AGI_BRIDGE_AGI_PORT": str(bridge.agi), "AGI_BRIDGE_HOST": "127.0.0.1"}
    )
    await asyncio.to_thread(asterisk.start)
    await bridge.start()
    await wait_for(lambda: "ARI application agi-bridge registered" in bridge.text(), 15, "ARI")
    ami = await harness.AmiClient.connect(events=False)
    try:
        for _ in range(2):
            await ami.action(
                "Originate",
                Channel="Local/default@agi-bridge-stasis",
                Application="Wait",
                Data="12",
                Async="true",
                timeout=10,
            )
        rx = re.compile(r" (w\d) \[\S+\] agi_bridge.call: state connecting -> active")
        await wait_for(lambda: len(rx.findall(bridge.text())) >= 2, 20, "two Stasis calls")
        assert set(rx.findall(bridge.text())) == {"w0"}
        apps = await asyncio.to_thread(harness.ari_request, "GET", "/applications")
        assert [a["name"] for a in apps] == ["agi-bridge"]
    finally:
        await ami.close()
    text = bridge.text()
    assert text.count("ARI application agi-bridge registered") == 1, text
    assert "taken over by another websocket" not in text
    assert FALLBACK.findall(asterisk.log_text()) == []
    assert await bridge.stop() == 0


def _setvars(asterisk: Asterisk) -> str:
    """AGI_BRIDGE_AUDIOSOCKET values as the dialplan saw them (its AudioSocket lines)."""
    rx = re.compile(r"AudioSocket\([0-9a-f-]{36},(127\.0\.0\.1:\d+)\)")
    return "\n".join(f"AGI_BRIDGE_AUDIOSOCKET={a}" for a in rx.findall(asterisk.log_text()))


async def test_a_stopped_bridge_hands_its_new_calls_to_the_other_and_loses_none(
    asterisk_factory: Callable[..., Asterisk],
    simulator: Simulator,
    bridges: list[BridgeProc],
    tmp_path: Path,
) -> None:
    a = BridgeProc("a", tmp_path, simulator.url, workers=1)
    b = BridgeProc("b", tmp_path, simulator.url, workers=1)
    bridges += [a, b]
    hosts = f"127.0.0.1:{a.agi}&127.0.0.1:{b.agi}"
    asterisk = asterisk_factory(env={"AGI_BRIDGE_HOSTS": hosts})
    await asyncio.to_thread(asterisk.start)
    await a.start()
    await b.start()
    ami = await harness.AmiClient.connect(events=False)
    try:
        # 1. both bridges up: calls are spread (random first bridge) until each has one
        for n in range(1, 33):
            await originate(ami, 60)
            await wait_for(
                lambda n=n: len(a.registered()) + len(b.registered()) >= n, 15, "registration"
            )
            if a.registered() and b.registered():
                break
        on_a = a.registered()
        assert on_a and b.registered()
        await wait_for(lambda: set(on_a.values()) <= a.active_call_ids(), 20, "A's calls active")

        # 2. A stops (SIGTERM) mid-run: it exits 0 and its live calls go to the fallback
        assert await a.stop() == 0
        await wait_for(
            lambda: set(on_a) <= {ch for ch, _ in FALLBACK.findall(asterisk.log_text())},
            20,
            "fallback of A's calls",
        )

        # 3. new calls: every one goes to B, also those that tried A first
        before = set(agent_channels(asterisk))
        for _ in range(6):
            await originate(ami, 30)
        await wait_for(lambda: len(set(agent_channels(asterisk)) - before) >= 6, 20, "new calls")
        new = set(agent_channels(asterisk)) - before
        await wait_for(lambda: new <= set(b.registered()), 20, "new calls registered at B")
        new_ids = {b.registered()[ch] for ch in new}
        await wait_for(lambda: new_ids <= b.active_call_ids(), 20, "new calls active at B")
        fell_back = {ch for ch, _ in FALLBACK.findall(asterisk.log_text())}
        assert not new & fell_back

        # 4. the books balance: each call that reached the agent path was registered by
        #    a bridge; the only fallbacks are A's calls, each with a reason in the log
        everyone = set(agent_channels(asterisk))
        assert everyone == set(a.registered()) | set(b.registered())
        assert fell_back == set(on_a)
        reasons = {r for ch, r in FALLBACK.findall(asterisk.log_text())}
        assert reasons <= {"audiosocket-ended", "audiosocket-FAILED"}
    finally:
        with contextlib.suppress(Exception):
            await ami.action("Hangup", Channel="/^Local\\//", timeout=5, check=False)
        await ami.close()
    assert await b.stop() == 0
