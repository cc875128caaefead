"""``agi-bridge serve --workers 2`` over real sockets: the supervisor, two worker
processes sharing the FastAGI port, each with its own AudioSocket port; Asterisk's side
played by the test (FastAGI request, then AudioSocket with the UUID at the address the
bridge told), the Realtime side by the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agi_bridge.simulator import Simulator
from agi_bridge.virtual_caller import VirtualCaller
from tests.integration.helpers import agi_request, until


def free_ports(count: int) -> int:
    """A base port such that base .. base+count-1 are all free (TCP, 127.0.0.1)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + count > 65535:
            continue
        ok = True
        for port in range(base, base + count):
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no run of free ports")


def two_worker_config(tmp_path: Path, realtime: str) -> tuple[Path, int, int, int]:
    """A config for two workers on free ports: (path, FastAGI, AudioSocket base, HTTP)."""
    agi, audio, http = free_ports(1), free_ports(2), free_ports(1)
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(
        f"""
listen: {{audiosocket: "127.0.0.1:{audio}", fastagi: "127.0.0.1:{agi}",
          http: "127.0.0.1:{http}"}}
ami: {{enabled: false}}
records: {{enabled: false}}
realtime: {realtime}
"""
    )
    return cfg, agi, audio, http


TOKEN = "front-test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Served:
    def __init__(self, proc: asyncio.subprocess.Process, agi: int, audio: int, http: int):
        self.proc, self.agi, self.audio, self.http = proc, agi, audio, http
        self.lines: list[str] = []

    def worker_pids(self) -> dict[int, int]:
        """{worker index: pid of its latest start}, from the supervisor's log."""
        out: dict[int, int] = {}
        for line in self.lines:
            m = re.search(r"worker (\d+) started \(pid (\d+)\)", line)
            if m:
                out[int(m[1])] = int(m[2])
        return out

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        return await self.http_request("GET", path, headers)

    async def http_request(
        self, method: str, path: str, headers: dict[str, str] | None = None, json: object = None
    ) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method, f"http://127.0.0.1:{self.http}{path}", headers=headers, json=json
            ) as r,
        ):
            return r.status, await r.text()

    def ready(self) -> int:
        return sum("ready" in line and "worker" in line for line in self.lines)


@pytest.fixture
async def served(simulator: Simulator, tmp_path: Path) -> AsyncIterator[Served]:
    cfg, agi, audio, http = two_worker_config(
        tmp_path, f'{{provider: url, url: "{simulator.url}", connect_timeout_s: 5}}'
    )
    # any key: the simulator wants one
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "AGI_BRIDGE_ADMIN_TOKEN": TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agi_bridge",
        "serve",
        "-c",
        str(cfg),
        "--workers",
        "2",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    s = Served(proc, agi, audio, http)

    async def read_log() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            s.lines.append(line.decode(errors="replace"))

    reader = asyncio.create_task(read_log())
    try:
        await until(lambda: s.ready() >= 2, timeout=30, what="two workers ready")
        yield s
    finally:
        if proc.returncode is None:
            proc.kill()  # the workers follow (PR_SET_PDEATHSIG)
        await proc.wait()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(reader, 10)


async def call_through(s: Served) -> tuple[str, VirtualCaller]:
    """One call as Asterisk places it; returns the AudioSocket address the bridge told."""
    variables = await agi_request(s.agi)
    address = variables["AGI_BRIDGE_AUDIOSOCKET"]
    host, port = address.rsplit(":", 1)
    caller = VirtualCaller(host, int(port), call_uuid=uuid.UUID(variables["AGI_BRIDGE_UUID"]))
    await caller.connect()
    return address, caller


async def test_calls_meet_their_registration_in_either_worker(served: Served) -> None:
    s = served
    expected = {f"127.0.0.1:{s.audio}", f"127.0.0.1:{s.audio + 1}"}
    seen: dict[str, list[VirtualCaller]] = {}
    try:
        # the kernel spreads FastAGI connections over both workers: call until both took one
        for _ in range(64):
            address, caller = await call_through(s)
            seen.setdefault(address, []).append(caller)
            if set(seen) == expected:
                break
        assert set(seen) == expected
        callers = [c for group in seen.values() for c in group]
        # every call was accepted by the worker that registered it: the greeting arrives
        await until(
            lambda: all(len(c.heard.pcm) > 8000 for c in callers), timeout=20, what="greetings"
        )
        assert not any(c.closed.is_set() for c in callers)
    finally:
        for group in seen.values():
            for c in group:
                await c.close()


async def test_a_uuid_sent_to_the_other_worker_is_refused(served: Served) -> None:
    s = served
    for _ in range(64):
        variables = await agi_request(s.agi)
        if variables["AGI_BRIDGE_AUDIOSOCKET"] == f"127.0.0.1:{s.audio}":
            break
    wrong = VirtualCaller(
        "127.0.0.1", s.audio + 1, call_uuid=uuid.UUID(variables["AGI_BRIDGE_UUID"])
    )
    await wrong.connect()
    try:
        async with asyncio.timeout(10):
            await wrong.closed.wait()  # refused: worker 1 never registered this UUID
        assert len(wrong.heard.pcm) == 0
    finally:
        await wrong.close()


async def test_a_crashed_worker_is_restarted_and_sigterm_exits_0(served: Served) -> None:
    s = served
    before = s.worker_pids()
    os.kill(before[1], signal.SIGKILL)
    await until(lambda: s.worker_pids().get(1, before[1]) != before[1], timeout=20, what="restart")
    await until(lambda: s.ready() >= 3, timeout=30, what="the new worker ready")
    assert any("worker 1" in line and "exited with status -9" in line for line in s.lines)
    # calls still work through both ports after the restart
    for _ in range(64):
        address, caller = await call_through(s)
        try:
            await until(lambda c=caller: len(c.heard.pcm) > 8000, timeout=20, what="greeting")
        finally:
            await caller.close()
        if address.endswith(f":{s.audio + 1}"):
            break
    else:
        pytest.fail("no call reached the restarted worker")
    s.proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        assert await s.proc.wait() == 0
    pids = s.worker_pids().values()
    await until(lambda: not any(_alive(p) for p in pids), timeout=10, what="workers gone")


async def test_one_http_front_for_all_workers_health_metrics_and_admin(served: Served) -> None:
    """listen.http is the supervisor's: /healthz and /metrics cover both workers, the
    admin API lists every worker's calls and reaches the worker that holds one."""
    s = served
    assert any(" w1 [-] " in line for line in s.lines)  # each worker's lines say which
    status, text = await s.get("/healthz")
    body = json.loads(text)
    assert status == 200, text
    assert set(body["workers"]) == {"0", "1"}
    assert all(w["status"] == "ok" for w in body["workers"].values())
    # one call in each worker
    callers: dict[str, VirtualCaller] = {}
    try:
        for _ in range(64):
            address, caller = await call_through(s)
            if address in callers:
                await caller.close()
                continue
            callers[address] = caller
            if len(callers) == 2:
                break
        assert len(callers) == 2
        await until(
            lambda: all(len(c.heard.pcm) > 8000 for c in callers.values()),
            timeout=20,
            what="greetings",
        )
        status, text = await s.get("/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(text)}
        up = {x.labels["worker"]: x.value for x in families["agi_bridge_worker_up"].samples}
        assert up == {"0": 1, "1": 1}
        live = {x.labels["worker"]: x.value for x in families["agi_bridge_active_calls"].samples}
        assert live == {"0": 1, "1": 1}, text
        # the admin API: one token, every worker's calls, each call reached where it is
        status, text = await s.get("/admin/calls")
        assert status == 401, text  # no token: refused (by the worker, same rule as ever)
        status, text = await s.get("/admin/calls", {**AUTH, "Host": "evil.example"})
        assert status == 403, text  # DNS rebinding: the Host is passed on and refused
        status, text = await s.get("/admin/calls", AUTH)
        assert status == 200, text
        listed = json.loads(text)["calls"]
        assert sorted(c["worker"] for c in listed) == [0, 1]
        in_worker_1 = next(c["id"] for c in listed if c["worker"] == 1)
        status, text = await s.get(f"/admin/calls/{in_worker_1}", AUTH)
        assert status == 200 and json.loads(text)["call"]["id"] == in_worker_1
        status, text = await s.http_request(
            "POST", f"/admin/calls/{in_worker_1}/hangup", AUTH, {"reason": "front test"}
        )
        assert status == 200, text
        status, _ = await s.http_request("POST", "/admin/calls/no-such-call/hangup", AUTH)
        assert status == 404
        worker_1 = f"127.0.0.1:{s.audio + 1}"
        await until(lambda: callers[worker_1].closed.is_set(), timeout=10, what="hung up")
        assert not callers[f"127.0.0.1:{s.audio}"].closed.is_set()
        # a worker that is down shows in /healthz (503, named) and in worker_up
        os.kill(s.worker_pids()[0], signal.SIGKILL)
        await until(lambda: "exited with status -9" in "".join(s.lines), timeout=10, what="exit")
        status, text = await s.get("/healthz")
        assert status == 503 and json.loads(text)["failing"] == ["worker 0"], text
        # a call may be in the silent worker: "did not answer", never "no such call"
        status, text = await s.http_request("POST", "/admin/calls/no-such-call/hangup", AUTH)
        assert status == 503 and json.loads(text)["missing_workers"] == [0], text
        status, text = await s.get("/admin/calls", AUTH)
        assert status == 200 and json.loads(text)["missing_workers"] == [0], text
        await until(lambda: s.ready() >= 3, timeout=30, what="worker 0 back")
        status, text = await s.get("/healthz")
        assert status == 200, text
        status, text = await s.get("/metrics")
        assert "agi_bridge_worker_restarts_total 1.0" in text or (
            "agi_bridge_worker_restarts_total 1" in text
        )
    finally:
        for c in callers.values():
            await c.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    ("listen_host", "advertise", "told"),
    [
        ("127.0.0.1", "", "127.0.0.1:{port}"),  # the listen host
        ("0.0.0.0", "", "127.0.0.1:{port}"),  # wildcard: where Asterisk reached FastAGI
        ("127.0.0.1", "pbx-side.example", "pbx-side.example:{port}"),  # behind NAT
        ("127.0.0.1", "off", None),  # not told: the dialplan's own settings
    ],
)
async def test_the_fastagi_answer_tells_this_process_audiosocket_address(
    listen_host: str, advertise: str, told: str | None
) -> None:
    from agi_bridge.app import Bridge
    from tests.integration.helpers import config

    cfg = config("")
    cfg = dataclasses.replace(
        cfg,
        listen=dataclasses.replace(
            cfg.listen, audiosocket=f"{listen_host}:0", audiosocket_advertise=advertise
        ),
    )
    async with Bridge(cfg) as bridge:
        variables = await agi_request(bridge.fastagi.port)
        expected = told.format(port=bridge.audiosocket.port) if told else None
        assert variables.get("AGI_BRIDGE_AUDIOSOCKET") == expected
        assert variables["AGI_BRIDGE_UUID"]


def test_a_worker_that_refuses_its_config_stops_the_supervisor_with_status_2() -> None:
    from agi_bridge.workers import Supervisor

    # what a worker does on a ConfigError (the CLI's status 2): restarting cannot mend it
    before = signal.getsignal(signal.SIGTERM)
    sup = Supervisor(lambda i: [sys.executable, "-c", f"raise SystemExit({2 if i else 0})"], 2)
    assert sup.run() == 2
    assert sup.restarts <= 1  # worker 0 exited 0 and may have been restarted once; no loop
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handlers, back


def test_a_taken_port_of_any_worker_fails_serve_at_start_up(tmp_path: Path) -> None:
    import subprocess

    cfg, _, audio, _ = two_worker_config(tmp_path, "{provider: simulator}")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", audio + 1))  # worker 1's AudioSocket port
        busy.listen()
        res = subprocess.run(
            [sys.executable, "-m", "agi_bridge", "serve", "-c", str(cfg), "--workers", "2"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "TMPDIR": str(tmp_path)},  # where its private directory goes
        )
    assert res.returncode == 2, res.stderr
    assert f"listen.audiosocket: 127.0.0.1:{audio + 1}/tcp is already in use" in res.stderr
    assert "worker 0 started" not in res.stderr
    assert list(tmp_path.glob("agi-bridge-*")) == []  # nothing left behind


async def test_ctrl_c_drains_and_a_second_one_hands_calls_over(served: Served) -> None:
    """SIGINT (Ctrl-C) reaches the supervisor only (the workers have their own session):
    the first drains the workers, a second makes them hand live calls to the fallback."""
    s = served
    _, caller = await call_through(s)
    try:
        await until(lambda: len(caller.heard.pcm) > 8000, timeout=20, what="greeting")
        s.proc.send_signal(signal.SIGINT)
        await asyncio.sleep(1.5)
        assert not caller.closed.is_set()  # draining: the call goes on
        assert not any("second stop signal" in line for line in s.lines)
        s.proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):  # well before drain_timeout_s (30 s)
            await caller.closed.wait()
        assert caller.heard.hangup_at is not None  # handed to the fallback
    finally:
        await caller.close()
    async with asyncio.timeout(20):
        assert await s.proc.wait() == 0
    assert any("second stop signal" in line for line in s.lines)
