"""The Docker stack's parts, run without Docker: `make smoke` as far as this machine can.

* Asterisk: the e2e tests' Asterisk 22 (Debian sid chroot, the packages the image
  installs) with /etc/asterisk rendered by the image's docker/asterisk/render-config.sh,
  run inside the chroot, from the tested asterisk-config/ (the harness only points
  asterisk.conf's run-time directories at a per-test directory, as in every e2e test).
* the simulator and the bridge: started with the commands and the environment the
  compose services get (docker/compose.yaml + compose.simulator.yaml, the bridge image's
  ENV, docker/agi-bridge.yaml), except that every address is 127.0.0.1 and ports are free
  ones: here all of them share one network namespace.
* the softphone: docker/softphone/smoke.py with baresip, exactly as the `softphone` service
  runs it; it must pass, and must fail once the bridge is gone (the dialplan's fallback).

What this cannot show: the images build, Docker's networking (service names, published
ports, NAT) behaves as docker/README.md describes.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker.helpers import (
    ASTERISK_CONFIG,
    BRIDGE_CONFIG,
    COMPOSE,
    COMPOSE_SIMULATOR,
    DOCKER,
    ROUTES,
    environment,
    load_compose,
    parse_dockerfile,
)
from tests.e2e import harness

pytestmark = pytest.mark.e2e

SECRET = "agi-bridge-docker-test-secret"
EXTERNAL = "192.0.2.10"  # TEST-NET-1: must show up in the transport, never be used here
SMOKE = DOCKER / "softphone" / "smoke.py"


class Process:
    """A process we start and stop by its pid, its output in a log file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], workdir: Path) -> None:
        self.log = workdir / f"{name}.log"
        self._out = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        harness.stop_process(self.proc, 10)
        self._out.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def services() -> dict[str, Any]:
    services: dict[str, Any] = load_compose(COMPOSE, COMPOSE_SIMULATOR)["services"]
    return services


def render_in_chroot(asterisk: harness.Asterisk, env: dict[str, str]) -> str:
    """Run the image's renderer inside the chroot (sid's dash and mawk, as in the image):
    the tested files in RUN/src, the result in the instance's etc directory."""
    asterisk.prepare()
    keep = (asterisk.etc_dir / "asterisk.conf").read_text()  # the harness's run directories
    src = asterisk.run_dir / "src"
    src.mkdir()
    for conf in ASTERISK_CONFIG.glob("*.conf"):
        shutil.copy2(conf, src / conf.name)
    shutil.copy2(DOCKER / "asterisk" / "render-config.sh", asterisk.run_dir / "render-config.sh")
    (asterisk.run_dir / "route").write_text(ROUTES)
    inside = asterisk.run_in_root
    res = subprocess.run(
        [
            "chroot",
            str(asterisk.root),
            "/bin/sh",
            str(inside / "render-config.sh"),
            str(inside / "src"),
            str(inside / "etc"),
        ],
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "AGI_BRIDGE_PROC_NET_ROUTE": str(inside / "route"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    (asterisk.etc_dir / "asterisk.conf").write_text(keep)
    return res.stderr


@dataclasses.dataclass
class Stack:
    asterisk: harness.Asterisk
    bridge: Process
    processes: list[Process]
    bridge_env: dict[str, str]
    ports: dict[str, int]
    workdir: Path

    def report(self) -> str:
        return "\n".join(f"--- {p.log.name}\n{p.text()[-3000:]}" for p in self.processes)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    harness.require_tools()
    root = harness.asterisk_root()
    ports = {name: harness.free_port() for name in ("agi", "audiosocket", "http", "simulator")}
    svc = services()

    # the simulator service: its compose command, on 127.0.0.1 and a free port
    command = [str(word) for word in svc["simulator"]["command"]]
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(ports["simulator"])
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AGI_BRIDGE_", "OPENAI"))}
    cli = [sys.executable, "-m", "agi_bridge.cli"]
    started: list[Process] = []

    # the bridge service: image ENV + compose environment, addresses moved to 127.0.0.1
    image_env = parse_dockerfile(DOCKER / "bridge" / "Dockerfile").final.env()
    env = {**base_env, **{k: v for k, v in image_env.items() if k != "PATH"}}
    env.update(environment(svc["bridge"]))
    assert env["AGI_BRIDGE_AMI_HOST"] == "asterisk"
    assert env["AGI_BRIDGE_REALTIME_URL"].startswith("ws://simulator:")
    env.update(
        AGI_BRIDGE_LISTEN_AUDIOSOCKET=f"127.0.0.1:{ports['audiosocket']}",
        AGI_BRIDGE_LISTEN_FASTAGI=f"127.0.0.1:{ports['agi']}",
        AGI_BRIDGE_LISTEN_HTTP=f"127.0.0.1:{ports['http']}",
        AGI_BRIDGE_AMI_HOST="127.0.0.1",
        AGI_BRIDGE_AMI_SECRET=SECRET,
        AGI_BRIDGE_REALTIME_URL=f"ws://127.0.0.1:{ports['simulator']}/v1/realtime",
        AGI_BRIDGE_CONFIG_FILE=str(BRIDGE_CONFIG),
    )

    # the asterisk service: its environment; the entrypoint resolves "bridge" to an address
    assert environment(svc["asterisk"])["AGI_BRIDGE_HOST"] == "bridge"
    asterisk = harness.Asterisk(
        tmp_path / "asterisk",
        root=root,
        ami_secret=None,  # written by the renderer, from AGI_BRIDGE_AMI_SECRET
        env={
            "AGI_BRIDGE_HOST": "127.0.0.1",
            "AGI_BRIDGE_AGI_PORT": str(ports["agi"]),
            "AGI_BRIDGE_AUDIOSOCKET_PORT": str(ports["audiosocket"]),
        },
    )
    try:  # stop() also deletes the run directory that prepare() made
        started.append(Process("simulator", [*cli, *command], base_env, tmp_path))
        render_in_chroot(
            asterisk,
            {
                "AGI_BRIDGE_AMI_SECRET": SECRET,
                "AST_EXTERNAL_ADDRESS": EXTERNAL,
                # here everything is on lo: loopback stays local and bound (the image: 0.0.0.0)
                "AST_LOCAL_NET": "127.0.0.0/8",
                "AST_BIND_ADDRESS": "127.0.0.1",
                "AST_AMI_BIND_ADDRESS": "127.0.0.1",
            },
        )
        asterisk.start()
        bridge = Process("bridge", [*cli, "serve", "-c", str(BRIDGE_CONFIG)], env, tmp_path)
        started.append(bridge)
        yield Stack(asterisk, bridge, started, env, ports, tmp_path)
    finally:
        for p in reversed(started):
            p.stop()
        asterisk.stop()


def run_smoke(
    workdir: Path, metrics_url: str, name: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """docker/softphone/smoke.py as the softphone service runs it (SMOKE_* environment),
    pointed at 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMOKE_")}
    env.update(environment(services()["softphone"]))
    out = workdir / name
    env.update(
        SMOKE_ASTERISK="127.0.0.1",
        SMOKE_BRIDGE_METRICS=metrics_url,
        SMOKE_SIP_LISTEN=f"127.0.0.1:{harness.free_port()}",
        SMOKE_RTP_PORTS="{}-{}".format(*harness.PHONE_RTP_PORTS),
        SMOKE_WORKDIR=str(out),
        SMOKE_WAIT="10",
    )
    res = subprocess.run(
        [sys.executable, str(SMOKE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return res, out


def wait_healthy(stack: Stack) -> None:
    """The image's HEALTHCHECK script: /healthz is 200 once AMI is logged in, which needs
    the AMI secret that the renderer put in the override file."""
    deadline = time.monotonic() + 20
    while True:
        res = subprocess.run(
            [sys.executable, str(DOCKER / "bridge" / "healthcheck.py")],
            env=stack.bridge_env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if res.returncode == 0:
            assert '"ami": {"ok": true' in res.stdout, res.stdout
            return
        assert time.monotonic() < deadline, f"{res.stdout}{res.stderr}\n{stack.report()}"
        time.sleep(0.3)


def test_rendered_config_takes_effect_in_asterisk_22(stack: Stack) -> None:
    asterisk = stack.asterisk
    transport = asterisk.cli("pjsip show transport transport-udp")
    assert re.search(r"\bbind\s+: 127\.0\.0\.1:5060\b", transport)
    assert re.search(rf"\bexternal_media_address\s+: {EXTERNAL}\b", transport)
    assert re.search(rf"\bexternal_signaling_address\s+: {EXTERNAL}\b", transport)
    assert re.search(r"\blocal_net\s+: 127\.0\.0\.0/255\.0\.0\.0\b", transport)
    for phone in ("6001", "6002"):
        endpoint = asterisk.cli(f"pjsip show endpoint {phone}")
        assert re.search(r"\bmedia_address\s+:\s*$", endpoint, re.M), endpoint
        assert re.search(r"\bbind_rtp_to_media_address\s+: false\b", endpoint)
        assert re.search(r"\bcontext\s+: agi-bridge-phones\b", endpoint)  # the rest unchanged
    assert "TCP Bindaddress:           127.0.0.1:5038" in asterisk.cli("manager show settings")
    user = asterisk.cli("manager show user agi_bridge")
    # the tested ACL, then the container networks (from the routing table) appended
    assert re.search(
        r"deny - 0\.0\.0\.0/0\.0\.0\.0\s+1: allow - 127\.0\.0\.1/255\.255\.255\.255\s+"
        r"2: allow - 10\.5\.0\.0/255\.255\.255\.0\s+3: allow - 172\.18\.0\.0/255\.255\.0\.0",
        user,
    ), user
    assert "write perm: call,originate" in user
    # the dialplan is the tested one, reading the bridge address from the environment
    assert "agi-bridge-settings" in asterisk.cli("dialplan show agi-bridge-settings")
    messages = asterisk.log_text("messages")
    assert " ERROR[" not in messages, messages
    assert " WARNING[" not in messages, messages


def test_smoke_call_passes_through_asterisk_bridge_and_simulator(stack: Stack) -> None:
    wait_healthy(stack)
    asterisk = stack.asterisk
    metrics = f"http://127.0.0.1:{stack.ports['http']}/metrics"
    res, out = run_smoke(stack.workdir, metrics, "smoke-ok")
    report = f"{res.stdout}\n{res.stderr}\n{stack.report()}"
    assert res.returncode == 0, report
    for check in (
        "call established",
        "caller stayed on the line",
        "greeting heard",
        "answer heard",
        "bridge counted the call",
        "bridge saw a turn",
    ):
        assert f"PASS {check}:" in res.stdout, report
    assert (out / "result.json").is_file()
    # the call took the agent path of the tested dialplan, not its fallback
    full = asterisk.log_text("full")
    assert "agi-bridge: PJSIP/6002-" in full and "to agent default" in full
    assert "agi-bridge: fallback" not in full
    # and the bridge went to the simulator service, not the built-in one
    assert "SIMULATOR" not in stack.bridge.text()

    # without the bridge the dialplan apologises and hangs up: the smoke test must fail
    stack.bridge.stop()
    stack.processes.remove(stack.bridge)
    asterisk.wait_for_no_channels(10)
    res, _ = run_smoke(stack.workdir, "", "smoke-bridge-down")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAIL caller stayed on the line:" in res.stdout
    asterisk.wait_for_log(r"agi-bridge: fallback for PJSIP/6002-\S+ agent default reason agi-", 10)
