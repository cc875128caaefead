"""The Docker stack, built and run for real: engine, images, `make up`, `make smoke`, `make down`.

What a user does after cloning, on a machine of the kind CI runs on (Debian bookworm, root,
no Docker Hub): scripts/docker-engine.sh installs Debian's docker.io plus the Compose and
buildx plugins and starts dockerd; scripts/docker-base-images.sh makes the base images the
shipped Dockerfiles start FROM (debootstrap + docker import, cached in
/var/cache/agi-bridge); then the Makefile's own targets run: `make up` (build every image,
wait until healthy), `make smoke` (a real baresip call through the containerised Asterisk,
bridge and simulator, judged by docker/softphone/smoke.py), `make down`. At the end the
dockerd this test started is stopped and the host's network is checked to be as found.

The stack publishes SIP and RTP on 127.0.0.1 (here on non-default host ports, set through
the environment: 5070 and 10200-10259, apart from the e2e Asterisk's 5060/10000-10099 and
the e2e phones' 10100-10199), and the e2e tests' Asterisk uses fixed ports: while the
stack runs (`make up` to `make down`) this test also holds /tmp/agi-e2e.lock, as the e2e
runs do, so the two never overlap. Installing, starting dockerd and building the images
need no port and happen before the lock is taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker.helpers import REPO

LOCK = Path("/tmp/agi-e2e.lock")
LOCK_WAIT_S = 1800  # another run holds it for at most a few minutes
SCRIPTS = REPO / "scripts"
COMPOSE_FILES = ["-f", "docker/compose.yaml", "-f", "docker/compose.simulator.yaml"]
PROJECT = "agi-bridge"
# Host ports other than the defaults: proves they come from the environment (defect 4).
HOST_PORTS = {
    "AGI_BRIDGE_SIP_PORT": "5070",
    "AGI_BRIDGE_RTP_START": "10200",
    "AGI_BRIDGE_RTP_END": "10259",
}
TABLES = ("filter", "nat", "mangle", "raw")


def run(
    cmd: list[str], timeout: float, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        cmd,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and res.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {res.returncode}\n--- stdout\n{res.stdout[-4000:]}"
            f"\n--- stderr\n{res.stderr[-4000:]}",
            pytrace=False,
        )
    return res


@contextlib.contextmanager
def e2e_lock() -> Iterator[None]:
    """Hold /tmp/agi-e2e.lock (flock). Under `flock /tmp/agi-e2e.lock pytest ...` this
    process inherited the locked descriptor: use it (locking it again is a no-op for the
    same open file) instead of deadlocking on a second open of the file."""
    inherited = None
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == str(LOCK):
                inherited = int(fd)
                break
    fd = inherited if inherited is not None else os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o666)

    def give_up(signum: int, frame: object) -> None:
        raise TimeoutError(f"{LOCK} still held after {LOCK_WAIT_S} s")

    # A blocking flock, like the other waiters (`flock` of util-linux) use, so this test is
    # not starved by them; SIGALRM bounds the wait.
    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(LOCK_WAIT_S)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        yield
    finally:
        if inherited is None:
            os.close(fd)  # releases the lock


def network_state() -> dict[str, str]:
    """What dockerd changes: interfaces, iptables rules and policies, IPv4 forwarding."""
    state = {
        "links": run(["ip", "-o", "link", "show"], 10).stdout,
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
    }
    state["links"] = "\n".join(
        sorted(line.split(":")[1].strip().split("@")[0] for line in state["links"].splitlines())
    )
    for cmd in ("iptables", "ip6tables"):
        for table in TABLES:
            res = run([cmd, "-t", table, "-S"], 10, check=False)
            state[f"{cmd} -t {table}"] = res.stdout if res.returncode == 0 else "n/a"
    return state


def container_ids() -> dict[str, str]:
    out = run(["docker", "compose", *COMPOSE_FILES, "ps", "-q", "-a"], 60).stdout.split()
    ids = {}
    for cid in out:
        name = run(["docker", "inspect", "-f", "{{.Name}}", cid], 30).stdout.strip()
        ids[name.lstrip("/")] = cid
    return ids


class Steps:
    """Runs the steps with the stack's environment and keeps their durations."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def __call__(self, name: str, cmd: list[str], timeout: float) -> str:
        t0 = time.monotonic()
        res = run(cmd, timeout, env={**HOST_PORTS, "APT_ALLOW_EXPIRED_RELEASE": "1"})
        self.timings[name] = time.monotonic() - t0
        return res.stdout + res.stderr


def test_docker_stack_builds_runs_and_answers_a_call(capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() != 0:
        pytest.fail("the Docker stack test installs and starts dockerd: run as root", pytrace=False)
    step = Steps()
    step("engine install", [str(SCRIPTS / "docker-engine.sh"), "install"], 900)
    before = network_state()
    step("engine start", [str(SCRIPTS / "docker-engine.sh"), "start"], 300)
    ours = run([str(SCRIPTS / "docker-engine.sh"), "status"], 30).stdout.startswith("ours")
    try:
        step("base images", [str(SCRIPTS / "docker-base-images.sh")], 900)
        # Building needs no fixed port: only the running stack holds the e2e lock.
        step(
            "build images",
            ["docker", "compose", *COMPOSE_FILES, "--profile", "smoke", "build"],
            900,
        )
        with e2e_lock():
            try:
                run_stack(step)
            finally:
                run(["make", "down"], 120, check=False)
    finally:
        step("engine stop", [str(SCRIPTS / "docker-engine.sh"), "stop"], 180)
    if ours:
        after = network_state()
        changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
        assert not changed, f"the host's network is not as it was found: {changed}"
    with capsys.disabled():
        print("\ndocker stack: " + ", ".join(f"{k} {v:.1f} s" for k, v in step.timings.items()))


def run_stack(step: Steps) -> None:
    # `make up`: build every image, start, wait until every health check passes
    step("make up", ["make", "up"], 900)
    ids = container_ids()
    assert set(ids) == {f"{PROJECT}-{s}-1" for s in ("asterisk", "bridge", "simulator")}, ids
    images = run(["docker", "compose", *COMPOSE_FILES, "images", "--quiet"], 60).stdout.split()
    assert len(set(images)) == 3, f"one image per service: {images}"

    # the host ports came from the environment, and Asterisk uses the same RTP range inside
    port = run(["docker", "compose", *COMPOSE_FILES, "port", "--protocol", "udp", "asterisk",
                "5060"], 60).stdout.strip()  # fmt: skip
    assert port == f"127.0.0.1:{HOST_PORTS['AGI_BRIDGE_SIP_PORT']}", port
    rtp = run(["docker", "compose", *COMPOSE_FILES, "exec", "-T", "asterisk", "asterisk", "-rx",
               "rtp show settings"], 60).stdout  # fmt: skip
    assert re.search(rf"Port start:\s+{HOST_PORTS['AGI_BRIDGE_RTP_START']}\b", rtp), rtp
    assert re.search(rf"Port end:\s+{HOST_PORTS['AGI_BRIDGE_RTP_END']}\b", rtp), rtp

    # a repeat `make up` changes nothing: no container is recreated
    step("make up (again)", ["make", "up"], 300)
    assert container_ids() == ids, "a repeat `make up` recreated containers"

    # `make smoke`: a real SIP call from baresip through Asterisk, bridge and simulator
    out = step("make smoke", ["make", "smoke"], 600)
    assert "smoke: PASSED" in out, out[-6000:]
    assert not re.search(r"^FAIL ", out, re.M), out[-6000:]
    assert container_ids() == ids, "`make smoke` recreated the running containers"

    # the simulator, PID 1 of its container, stops at once on `docker stop` (SIGTERM)
    simulator = ids[f"{PROJECT}-simulator-1"]
    t0 = time.monotonic()
    run(["docker", "stop", "-t", "20", simulator], 60)
    stopped_in = time.monotonic() - t0
    code = run(["docker", "inspect", "-f", "{{.State.ExitCode}}", simulator], 30).stdout.strip()
    assert code == "0" and stopped_in < 10, f"simulator: exit {code} after {stopped_in:.1f} s"

    step("make down", ["make", "down"], 120)
    assert container_ids() == {}, "containers left after `make down`"
