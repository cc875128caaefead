"""The `agi-bridge` command as a new user meets it: mistakes end in one line naming what
to change (checked before a call starts), and the processes stop when asked.

Each test runs the real command in a subprocess (`python -m agi_bridge.cli`) on real
sockets; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agi_bridge.cli import main

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "agi_bridge.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, res.stderr
    return lines[0]


def write_config(path: Path, **listen: int) -> Path:
    ports = {name: listen.get(name, free_port()) for name in ("audiosocket", "fastagi", "http")}
    path.write_text(
        "listen:\n"
        + "".join(f"  {name}: 127.0.0.1:{port}\n" for name, port in ports.items())
        + f"ami:\n  port: {free_port()}\n"
        + "realtime:\n  provider: simulator\n"
    )
    return path


@contextlib.contextmanager
def running(cmd: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()  # our own child, by pid
        proc.communicate(timeout=10)


def wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited {proc.returncode}: {proc.communicate()[0]}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {timeout} s")


# --- flags ---------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """main() configures the root logger; put it back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_global_flags_are_accepted_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    example = str(REPO / "examples" / "agi-bridge.yaml")
    assert main(["check", "--log-level", "debug", "-c", example]) == 0
    assert main(["--log-level", "ERROR", "check", "-c", example, "--log-format", "json"]) == 0
    assert "OK   config" in capsys.readouterr().out


def test_unknown_log_level_is_one_line() -> None:
    for args in (["--log-level", "LOUD", "serve"], ["serve", "--log-level", "LOUD"]):
        res = cli(*args, timeout=30)
        assert res.returncode == 2
        assert "Traceback" not in res.stderr
        assert "invalid log level 'LOUD' (choose from DEBUG, INFO" in res.stderr, res.stderr


# --- ports ---------------------------------------------------------------------------------


def test_port_in_use_names_the_setting_and_the_holder(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path / "bridge.yaml", fastagi=port)
        res = cli("serve", "-c", str(config), timeout=30)
    assert res.returncode == 2
    line = one_line_error(res)
    assert line.startswith(f"error: listen.fastagi: 127.0.0.1:{port}/tcp is already in use")
    assert f"pid {os.getpid()}" in line, line  # this test process holds it
    assert line.endswith("change listen.fastagi"), line


def test_simulator_port_in_use_names_the_option() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = cli("simulate", "--port", str(port), timeout=30)
    assert res.returncode == 2
    assert f"--port: 127.0.0.1:{port}/tcp is already in use" in one_line_error(res)


# --- serve without Asterisk -----------------------------------------------------------------


def test_serve_without_asterisk_says_why_it_is_unhealthy(tmp_path: Path) -> None:
    http = free_port()
    config = write_config(tmp_path / "bridge.yaml", http=http)
    env = {k: v for k, v in os.environ.items() if k != "AGI_BRIDGE_AMI_SECRET"}
    with running([*CLI, "serve", "-c", str(config)], env=env) as proc:
        wait_for_port(http, proc)
        # one worker per core behind the supervisor's front: 503 while they start, then
        # 503 from their own checks, which say why
        deadline = time.monotonic() + 20
        while True:
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=5)
            assert answer.value.code == 503
            body = answer.value.read().decode()
            if "connect failed" in body or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "connect failed" in body and "ami.enabled: false" in body, body
        time.sleep(6.5)  # past the AMI grace period of the start-up hint
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, out
    assert re.search(r" ready \(.*, \d+ start-up objects frozen\)", out), out
    assert "AMI secret is empty: set the environment variable AGI_BRIDGE_AMI_SECRET" in out
    assert re.search(
        r"not logged in to AMI at 127\.0\.0\.1:\d+ after 5 s .*/healthz answers 503", out
    ), out


# --- demo ----------------------------------------------------------------------------------


def test_demo_wav_into_a_missing_directory_fails_before_the_call(tmp_path: Path) -> None:
    t0 = time.monotonic()
    res = cli("demo", "--wav", str(tmp_path / "missing" / "heard.wav"), timeout=30)
    assert res.returncode == 2
    assert "--wav" in one_line_error(res) and "does not exist" in res.stderr
    assert time.monotonic() - t0 < 15, "checked before the ~20 s call, not after it"
    assert "virtual caller connected" not in res.stdout


def test_demo_ends_with_an_error_when_the_realtime_session_fails(tmp_path: Path) -> None:
    dead = free_port()  # nothing listens here: the Realtime connection is refused
    env = {
        "AGI_BRIDGE_REALTIME_PROVIDER": "url",
        "AGI_BRIDGE_REALTIME_URL": f"ws://127.0.0.1:{dead}/v1/realtime",
        "AGI_BRIDGE_REALTIME_API_KEY_ENV": "AGI_BRIDGE_TEST_KEY",
        "AGI_BRIDGE_TEST_KEY": "sk-test",
    }
    res = cli("demo", "--wav", str(tmp_path / "heard.wav"), env=env, timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    line = one_line_error(res)
    assert line.startswith("error: the call ended before the caller spoke"), line
    assert not (tmp_path / "heard.wav").exists()


# --- simulate as a container's PID 1 ----------------------------------------------------------


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def test_simulate_stops_on_sigterm_as_pid_1() -> None:
    """`docker stop` sends SIGTERM to PID 1, which the kernel delivers only to a handler:
    without one the simulator ran on until the grace period ended in SIGKILL."""
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is installed by scripts/install-system-deps.sh"
    userns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    port = free_port()
    # --kill-child: if this test fails, the namespace's PID 1 dies with unshare
    cmd = [unshare, *userns, "--pid", "--fork", "--kill-child", "--", *CLI, "simulate",
           "--port", str(port)]  # fmt: skip
    with running(cmd) as proc:
        wait_for_port(port, proc)
        (sim,) = children(proc.pid)
        nspid = re.search(r"^NSpid:\s+(.*)$", Path(f"/proc/{sim}/status").read_text(), re.M)
        assert nspid and nspid.group(1).split()[-1] == "1", "the simulator is PID 1 of its ns"
        t0 = time.monotonic()
        os.kill(sim, signal.SIGTERM)
        try:
            out = proc.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            pytest.fail("the simulator ignored SIGTERM as PID 1", pytrace=False)
    assert proc.returncode == 0, out
    assert time.monotonic() - t0 < 5
    assert "signal received, stopping" in out


# --- init ----------------------------------------------------------------------------------


def test_init_writes_the_asterisk_config_and_the_example(tmp_path: Path) -> None:
    target = tmp_path / "pbx"
    res = cli("init", str(target), timeout=30)
    assert res.returncode == 0, res.stderr
    assert (target / "agi-bridge.yaml").read_bytes() == (
        REPO / "examples" / "agi-bridge.yaml"
    ).read_bytes()
    shipped = {p.name for p in (REPO / "asterisk-config").iterdir()}
    assert {p.name for p in (target / "asterisk-config").iterdir()} == shipped
    for name in shipped:
        assert (target / "asterisk-config" / name).read_bytes() == (
            REPO / "asterisk-config" / name
        ).read_bytes(), name
    # never overwrites without --force
    (target / "agi-bridge.yaml").write_text("mine\n")
    res = cli("init", str(target), timeout=30)
    assert res.returncode == 2
    assert "exist already" in one_line_error(res)
    assert (target / "agi-bridge.yaml").read_text() == "mine\n"
    assert cli("init", str(target), "--force", timeout=30).returncode == 0
    assert (target / "agi-bridge.yaml").read_text() != "mine\n"


def test_port_holders_are_named_for_tcp_and_udp() -> None:
    """What the e2e harness and `serve` say about a taken port (agi_bridge.cli.ports)."""
    from agi_bridge.cli.ports import describe_holders
    from tests.e2e.harness import busy_ports_message

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", 0))
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        uport, tport = udp.getsockname()[1], tcp.getsockname()[1]
        assert describe_holders(uport, "udp").startswith(f"held by pid {os.getpid()} (")
        assert describe_holders(tport, "tcp").startswith(f"held by pid {os.getpid()} (")
        message = busy_ports_message([f"udp/{uport}"])
        assert f"127.0.0.1 udp/{uport} held by pid {os.getpid()}" in message
        assert "flock /tmp/agi-e2e.lock" in message
    assert describe_holders(uport, "udp").startswith("see `ss -lunp sport = :")
