"""Start-up configuration over the real CLI: IPv6 listen addresses from the environment,
and no silent fallback to the simulator when the Realtime key is missing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from agi_bridge.app import check_realtime_key
from agi_bridge.config import load_text, split_hostport
from agi_bridge.errors import ConfigError

CONFIG = """
listen: {audiosocket: "127.0.0.1:0", fastagi: "127.0.0.1:0"}
ami: {enabled: false}
records: {enabled: false}
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGI_BRIDGE_")}
    env.pop("OPENAI_API_KEY", None)
    env.update(extra)
    return env


def _free_port(family: socket.AddressFamily, host: str) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def test_ipv6_bracket_form_from_the_environment() -> None:
    cfg = load_text("", "t.yaml", env={"AGI_BRIDGE_LISTEN_HTTP": "[::1]:17089"})
    assert cfg.listen.http == "[::1]:17089"
    assert split_hostport(cfg.listen.http) == ("::1", 17089)
    for bad in ("::1:17089", "[::1:17089", "[nothost]:80"):
        with pytest.raises(ConfigError) as info:
            load_text("", "t.yaml", env={"AGI_BRIDGE_LISTEN_HTTP": bad})
        assert info.value.key == "AGI_BRIDGE_LISTEN_HTTP"


def test_check_accepts_the_ipv6_env_form(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(CONFIG)
    env = _env(AGI_BRIDGE_LISTEN_HTTP="[::1]:17089", AGI_BRIDGE_REALTIME_PROVIDER="simulator")
    out = subprocess.run(
        [sys.executable, "-m", "agi_bridge", "check", "-c", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr


def test_serve_listens_on_ipv6_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(CONFIG)
    port = _free_port(socket.AF_INET6, "::1")
    env = _env(AGI_BRIDGE_LISTEN_HTTP=f"[::1]:{port}", AGI_BRIDGE_REALTIME_PROVIDER="simulator")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agi_bridge", "serve", "-c", str(path)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        body = b""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://[::1]:{port}/healthz", timeout=2) as r:
                    body = r.read()
                    break
            except OSError:
                time.sleep(0.2)
        assert b'"status": "ok"' in body, proc.stderr.read() if proc.poll() is not None else ""
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err


def test_serve_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(CONFIG)
    out = subprocess.run(
        [sys.executable, "-m", "agi_bridge", "serve", "-c", str(path)],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "realtime.simulator_without_key" in lines[0], out.stderr
    assert "OPENAI_API_KEY" in lines[0] and "Traceback" not in out.stderr


def test_the_simulator_only_when_asked_for() -> None:
    base = load_text(CONFIG, "t.yaml")
    assert base.realtime.simulator_without_key is False
    with pytest.raises(ConfigError, match="simulator_without_key"):
        check_realtime_key(base, env={})
    check_realtime_key(base, env={"OPENAI_API_KEY": "sk-x"})
    asked = load_text(CONFIG + "realtime: {simulator_without_key: true}\n", "t.yaml")
    check_realtime_key(asked, env={})
    check_realtime_key(load_text(CONFIG + "realtime: {provider: simulator}\n", "t.yaml"), env={})
    flag = load_text(CONFIG, "t.yaml", env={"AGI_BRIDGE_REALTIME_SIMULATOR_WITHOUT_KEY": "true"})
    check_realtime_key(flag, env={})


def test_demo_still_runs_offline(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agi_bridge", "demo", "--wav", str(tmp_path / "h.wav")],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "bundled SIMULATOR" in out.stdout
