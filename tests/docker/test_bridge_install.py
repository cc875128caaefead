"""The bridge image's install step, run here in a fresh virtualenv.

The build stage of docker/bridge/Dockerfile is replayed: its COPY instructions stage the
same files under a scratch root, its one RUN line runs there (the shared
docker/bridge/install-bridge.sh: `python -m venv` + `pip install` of the package from the
copied sources, as in the image; pip uses this machine's index configuration). The result
must run `agi-bridge --version`, pass `agi-bridge check` on docker/agi-bridge.yaml with the
environment the container gets, and serve /healthz to the image's HEALTHCHECK script.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import agi_bridge
from tests.docker.helpers import (
    BRIDGE_CONFIG,
    COMPOSE,
    COMPOSE_SIMULATOR,
    DOCKER,
    REPO,
    environment,
    load_compose,
    parse_dockerfile,
)

DOCKERFILE = DOCKER / "bridge" / "Dockerfile"
HEALTHCHECK = DOCKER / "bridge" / "healthcheck.py"


def _copy(src: Path, dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__")
    if src.is_dir():
        shutil.copytree(src, dest, ignore=ignore, dirs_exist_ok=True)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)


def replay_build_stage(root: Path) -> list[str]:
    """Stage the build stage's COPYs under ``root`` and run its RUN; the command run."""
    stage = parse_dockerfile(DOCKERFILE).stages[0]
    for _flags, sources, dest in stage.copies():
        target = root / dest.lstrip("/")
        for src in sources:
            path = REPO / src
            if dest.endswith("/"):
                _copy(path, target if path.is_dir() else target / path.name)
            else:
                _copy(path, target)
    runs = stage.all("RUN")
    assert len(runs) == 1, "the build stage has one RUN: the shared install script"
    words = shlex.split(runs[0].args)
    program = shutil.which(words[0], path=str(root / "usr/local/bin"))
    assert program, f"{words[0]} is not installed by a COPY of the build stage"
    command = ["/bin/sh", program] + [
        str(root / w.lstrip("/")) if w.startswith("/") else w for w in words[1:]
    ]
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("VIRTUAL_ENV", None)
    res = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, f"{command}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return command


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bridge-image")
    replay_build_stage(root)
    return root


@pytest.fixture(scope="module")
def venv_bin(image_root: Path) -> Path:
    return image_root / "opt" / "agi-bridge" / "bin"


def container_env(*compose_files: Path) -> dict[str, str]:
    """The bridge container's AGI_BRIDGE_*/OPENAI variables: image ENV, then compose's."""
    env = {k: v for k, v in parse_dockerfile(DOCKERFILE).final.env().items() if k != "PATH"}
    env.update(environment(load_compose(*compose_files)["services"]["bridge"]))
    return env


def clean_env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AGI_BRIDGE_", "OPENAI"))}
    return {**keep, **extra}


def test_install_gives_a_working_agi_bridge(venv_bin: Path) -> None:
    res = subprocess.run(
        [str(venv_bin / "agi-bridge"), "--version"], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == agi_bridge.__version__
    # installed from the copied sources, not this checkout (no editable install)
    out = subprocess.run(
        [str(venv_bin / "python"), "-c", "import agi_bridge; print(agi_bridge.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout
    assert "site-packages" in out and str(REPO) not in out


def test_the_installed_package_writes_its_configuration(venv_bin: Path, tmp_path: Path) -> None:
    """`pip install agi-bridge` is enough: `agi-bridge init` of the installed package (no
    checkout around it) writes the tested asterisk-config/ and the example config."""
    res = subprocess.run(
        [str(venv_bin / "agi-bridge"), "init", str(tmp_path / "pbx")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    written = tmp_path / "pbx"
    assert (written / "agi-bridge.yaml").read_bytes() == (
        REPO / "examples" / "agi-bridge.yaml"
    ).read_bytes()
    for conf in (REPO / "asterisk-config").iterdir():
        assert (written / "asterisk-config" / conf.name).read_bytes() == conf.read_bytes()


@pytest.mark.parametrize(
    "files",
    [(COMPOSE, COMPOSE_SIMULATOR), (COMPOSE,)],
    ids=["simulator-service", "openai-or-built-in-simulator"],
)
def test_docker_config_passes_check_in_the_container_environment(
    venv_bin: Path, files: tuple[Path, ...]
) -> None:
    env = clean_env(**container_env(*files))
    res = subprocess.run(
        [str(venv_bin / "agi-bridge"), "check", "-c", str(BRIDGE_CONFIG)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith(f"OK   config {BRIDGE_CONFIG}: 2 agents (default, ivr)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served_bridge(venv_bin: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """`agi-bridge serve` from the fresh install with docker/agi-bridge.yaml; listeners on
    127.0.0.1 (the image binds 0.0.0.0), AMI off (no Asterisk here)."""
    env = {k: v for k, v in container_env(COMPOSE).items() if k != "OPENAI_API_KEY"}
    env.update(
        AGI_BRIDGE_LISTEN_AUDIOSOCKET=f"127.0.0.1:{free_port()}",
        AGI_BRIDGE_LISTEN_FASTAGI=f"127.0.0.1:{free_port()}",
        AGI_BRIDGE_LISTEN_HTTP=f"127.0.0.1:{free_port()}",
        AGI_BRIDGE_AMI_ENABLED="false",
        AGI_BRIDGE_CONFIG_FILE=str(BRIDGE_CONFIG),  # mounted at /etc/agi-bridge/ in compose
    )
    env = clean_env(**env)
    log = open(tmp_path / "bridge.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(venv_bin / "agi-bridge"), "serve", "-c", str(BRIDGE_CONFIG)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield env
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def healthcheck(venv_bin: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv_bin / "python"), str(HEALTHCHECK)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_image_healthcheck_against_the_installed_bridge(
    venv_bin: Path, served_bridge: dict[str, str], tmp_path: Path
) -> None:
    deadline = time.monotonic() + 20
    while (res := healthcheck(venv_bin, served_bridge)).returncode != 0:
        log = (tmp_path / "bridge.log").read_text()
        assert time.monotonic() < deadline, f"{res.stdout}{res.stderr}\n{log}"
        time.sleep(0.3)
    assert "/healthz: 200 " in res.stdout and '"status": "ok"' in res.stdout


def test_records_land_in_the_compose_volume() -> None:
    from agi_bridge.config import load_text

    cfg = load_text(BRIDGE_CONFIG.read_text(), str(BRIDGE_CONFIG), env={})
    final = parse_dockerfile(DOCKERFILE).final
    workdir = final.all("WORKDIR")[-1].args
    volumes = load_compose(COMPOSE)["services"]["bridge"]["volumes"]
    assert cfg.records.enabled and not cfg.records.dir.startswith("/")
    assert f"bridge-records:{workdir}/{cfg.records.dir}" in volumes
    assert final.all("USER")[-1].args == "agi-bridge"
    run = " ".join(i.args for i in final.all("RUN"))
    assert f"chown agi-bridge:agi-bridge {workdir}/{cfg.records.dir}" in run


def test_healthcheck_fails_without_a_bridge(venv_bin: Path) -> None:
    env = clean_env(
        AGI_BRIDGE_CONFIG_FILE=str(BRIDGE_CONFIG),
        AGI_BRIDGE_LISTEN_HTTP=f"127.0.0.1:{free_port()}",
    )
    res = healthcheck(venv_bin, env)
    assert res.returncode == 1
    assert "/healthz:" in res.stdout


def test_healthcheck_asks_loopback_for_a_wildcard_listener(venv_bin: Path) -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import healthcheck; "
        "print(healthcheck.healthz_url(sys.argv[2]))"
    )
    env = clean_env(AGI_BRIDGE_LISTEN_HTTP="0.0.0.0:8088")
    out = subprocess.run(
        [str(venv_bin / "python"), "-c", code, str(HEALTHCHECK.parent), str(BRIDGE_CONFIG)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "http://127.0.0.1:8088/healthz"
