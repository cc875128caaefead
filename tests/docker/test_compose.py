"""docker/compose.yaml (+ compose.simulator.yaml), checked without a Docker engine.

No `docker compose` here: the model is read with PyYAML and interpolated and merged the way
Compose does for the keys docker/ uses (tests/docker/helpers.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from agi_bridge.config import load_text, split_hostport
from tests.docker.helpers import (
    ASTERISK_CONFIG,
    BRIDGE_CONFIG,
    COMPOSE,
    COMPOSE_SIMULATOR,
    DOCKER,
    REPO,
    dockerignore_allows,
    environment,
    load_compose,
    parse_dockerfile,
    published_ports,
    raw_compose,
    stage_args,
    variables,
)

ASTERISK_CONFIG_IN_IMAGE = "/usr/share/agi-bridge/asterisk-config"
BRIDGE_CONFIG_IN_IMAGE = "/etc/agi-bridge/agi-bridge.yaml"
DEV_AMI_SECRET = "agi-bridge-dev-secret"


def conf_value(name: str, section: str, key: str) -> str:
    """First ``key`` of ``[section]`` in asterisk-config/NAME (comments stripped)."""
    current = None
    for raw in (ASTERISK_CONFIG / name).read_text().splitlines():
        line = raw.split(";", 1)[0].strip()
        m = re.match(r"^\[([^\]]+)\]", line)
        if m:
            current = m.group(1)
        elif current == section and re.match(rf"^{key}\s*=", line):
            return line.split("=", 1)[1].lstrip(">").strip()
    raise AssertionError(f"no {key} in [{section}] of {name}")


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    """The model `make up` uses without OPENAI_API_KEY (both files, no variables set)."""
    return load_compose(COMPOSE, COMPOSE_SIMULATOR)


@pytest.fixture(scope="module")
def plain() -> dict[str, Any]:
    """compose.yaml alone (`make up` with OPENAI_API_KEY set, or `docker compose up`)."""
    return load_compose(COMPOSE)


def bridge_config(service: dict[str, Any]) -> Any:
    """The bridge's effective config in its container: the mounted file plus the image's
    ENV and the service's environment (the loader's AGI_BRIDGE_* overrides)."""
    env = parse_dockerfile(DOCKER / "bridge" / "Dockerfile").final.env()
    env.update(environment(service))
    return load_text(BRIDGE_CONFIG.read_text(), str(BRIDGE_CONFIG), env=env)


def test_compose_files_parse_and_name_the_services(
    stack: dict[str, Any], plain: dict[str, Any]
) -> None:
    for path in (COMPOSE, COMPOSE_SIMULATOR):
        data = raw_compose(path)
        unknown = {k for k in data if not k.startswith("x-")} - {
            "name",
            "services",
            "volumes",
            "networks",
            "secrets",
            "configs",
        }
        assert not unknown, f"{path.name}: unknown top-level keys {unknown}"
    assert set(plain["services"]) == {"asterisk", "bridge", "softphone"}
    assert set(stack["services"]) == {"asterisk", "bridge", "softphone", "simulator"}
    assert plain["services"]["softphone"]["profiles"] == ["smoke"]
    for name in ("asterisk", "bridge", "simulator"):
        assert "profiles" not in stack["services"][name], name


def test_every_variable_has_a_default() -> None:
    """`docker compose up` works without a .env file: no ${VAR} without a default."""
    for path in (COMPOSE, COMPOSE_SIMULATOR):
        for m in variables(raw_compose(path)):
            assert m.group(2) in (":-", "-"), f"{path.name}: {m.group(0)} has no default"


def test_build_contexts_dockerfiles_and_copied_files_exist(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        build = service.get("build")
        assert build, f"{name}: no build section (the images are built from this repository)"
        context = (DOCKER / build["context"]).resolve()
        assert context.is_dir(), f"{name}: build context {context} missing"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
        assert ignore.is_file(), f"{name}: {ignore} missing (the context would include .venv)"
        assert not dockerignore_allows(ignore, ".venv"), f"{name}: .venv sent to the builder"
        parsed = parse_dockerfile(dockerfile)
        for stage in parsed.stages:
            for flags, sources, _ in stage.copies():
                if "from" in flags:
                    continue
                for src in sources:
                    assert (context / src).exists(), f"{dockerfile}: COPY {src} missing"
                    assert dockerignore_allows(ignore, src), f"{ignore.name} excludes {src}"
        declared = set(parsed.global_args).union(*(stage_args(st) for st in parsed.stages))
        for arg in build.get("args") or {}:
            assert arg in declared, f"{name}: build arg {arg} not declared"


def test_mounted_files_exist_and_are_the_tested_ones(stack: dict[str, Any]) -> None:
    declared = set(raw_compose(COMPOSE).get("volumes") or {})
    mounts: dict[str, dict[str, Path]] = {}
    for name, service in stack["services"].items():
        for entry in service.get("volumes") or []:
            src, dst, *mode = entry.split(":")
            if src.startswith((".", "/")):
                path = (DOCKER / src).resolve()
                assert path.exists(), f"{name}: mounted {src} does not exist"
                assert mode == ["ro"], f"{name}: mount {src} read-only"
                mounts.setdefault(name, {})[dst] = path
            else:
                assert src in declared, f"{name}: named volume {src} not declared"
        for env_file in service.get("env_file") or []:
            assert (DOCKER / env_file).is_file(), f"{name}: env_file {env_file} missing"
    # the tested asterisk-config/ as is, where the image and its entrypoint expect it
    assert mounts["asterisk"][ASTERISK_CONFIG_IN_IMAGE] == ASTERISK_CONFIG
    entrypoint = (DOCKER / "asterisk" / "entrypoint.sh").read_text()
    assert f"AGI_BRIDGE_ASTERISK_CONFIG:-{ASTERISK_CONFIG_IN_IMAGE}" in entrypoint
    # the bridge config that `agi-bridge check` validates (test_bridge_install.py)
    assert mounts["bridge"][BRIDGE_CONFIG_IN_IMAGE] == BRIDGE_CONFIG
    cmd = parse_dockerfile(DOCKER / "bridge" / "Dockerfile").final.all("CMD")[-1].json_args()
    assert cmd == ["serve", "-c", BRIDGE_CONFIG_IN_IMAGE]


def test_only_sip_and_rtp_of_asterisk_are_published(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        assert service.get("network_mode") is None, f"{name}: network_mode"
        if name != "asterisk":
            assert not service.get("ports"), f"{name} publishes {service.get('ports')}"
    ports = published_ports(stack["services"]["asterisk"])
    sip_port = int(conf_value("pjsip.conf", "transport-udp", "bind").rsplit(":", 1)[1])
    rtp = (
        int(conf_value("rtp.conf", "general", "rtpstart")),
        int(conf_value("rtp.conf", "general", "rtpend")),
    )
    assert {(p.container_ports, p.protocol) for p in ports} == {
        ((sip_port, sip_port), "udp"),
        (rtp, "udp"),
    }
    for p in ports:
        assert p.host_ports == p.container_ports, "same port numbers outside (SDP carries them)"
        assert p.host_ip == "127.0.0.1", "default: reachable from this machine only"
    assert (sip_port, rtp) == ((5060), (10000, 10099))


def test_publish_address_is_configurable() -> None:
    model = load_compose(COMPOSE, env={"AGI_BRIDGE_PUBLISH_ADDRESS": "0.0.0.0"})
    assert {p.host_ip for p in published_ports(model["services"]["asterisk"])} == {"0.0.0.0"}


def test_the_services_find_each_other(stack: dict[str, Any]) -> None:
    services = stack["services"]
    asterisk, bridge = environment(services["asterisk"]), services["bridge"]
    cfg = bridge_config(bridge)
    # Asterisk -> bridge: the dialplan's AGI_BRIDGE_* settings point at the bridge listeners
    assert asterisk["AGI_BRIDGE_HOST"] == "bridge"
    agi_host, agi_port = split_hostport(cfg.listen.fastagi)
    as_host, as_port = split_hostport(cfg.listen.audiosocket)
    http_host, http_port = split_hostport(cfg.listen.http)
    assert (agi_host, as_host, http_host) == ("0.0.0.0", "0.0.0.0", "0.0.0.0")
    assert int(asterisk["AGI_BRIDGE_AGI_PORT"]) == agi_port
    assert int(asterisk["AGI_BRIDGE_AUDIOSOCKET_PORT"]) == as_port
    # bridge -> Asterisk: AMI as configured in manager.conf
    assert cfg.ami.enabled and cfg.ami.host == "asterisk"
    assert cfg.ami.port == int(conf_value("manager.conf", "general", "port"))
    assert f"[{cfg.ami.username}]" in (ASTERISK_CONFIG / "manager.conf").read_text()
    # bridge -> simulator
    assert cfg.realtime.provider == "url"
    m = re.fullmatch(r"ws://([^:/]+):(\d+)/v1/realtime", cfg.realtime.url)
    assert m and m.group(1) == "simulator", cfg.realtime.url
    command = services["simulator"]["command"]
    assert command[:1] == ["simulate"]
    assert command[command.index("--port") + 1] == m.group(2)
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert environment(bridge)[cfg.realtime.api_key_env], "the simulator needs some token"
    # softphone -> Asterisk and the bridge's /metrics
    phone = environment(services["softphone"])
    assert phone["SMOKE_ASTERISK"] == "asterisk"
    assert phone["SMOKE_BRIDGE_METRICS"] == f"http://bridge:{http_port}/metrics"
    assert set(services["softphone"]["depends_on"]) == {"asterisk", "bridge"}


def test_with_a_key_the_bridge_uses_openai(plain: dict[str, Any]) -> None:
    model = load_compose(COMPOSE, env={"OPENAI_API_KEY": "sk-test"})
    assert environment(model["services"]["bridge"])["OPENAI_API_KEY"] == "sk-test"
    cfg = bridge_config(plain["services"]["bridge"])
    assert cfg.realtime.provider == "openai" and cfg.realtime.api_key_env == "OPENAI_API_KEY"
    assert "simulator" not in plain["services"]


def test_secrets_are_not_committed() -> None:
    """The AMI secret is shared through one variable whose only literal value is the
    development default documented in manager.conf; the OpenAI key has no value at all."""
    assert conf_value("manager.conf", "agi_bridge", "secret") == DEV_AMI_SECRET
    raw = raw_compose(COMPOSE)["services"]
    for name in ("asterisk", "bridge"):
        env = environment(raw[name])
        assert env["AGI_BRIDGE_AMI_SECRET"] == "${AGI_BRIDGE_AMI_SECRET:-" + DEV_AMI_SECRET + "}"
    assert environment(raw["bridge"])["OPENAI_API_KEY"] == "${OPENAI_API_KEY:-}"
    model = load_compose(COMPOSE, env={"AGI_BRIDGE_AMI_SECRET": "s3cret"})
    for name in ("asterisk", "bridge"):
        assert environment(model["services"][name])["AGI_BRIDGE_AMI_SECRET"] == "s3cret"
    # the smoke phone uses the documented credentials of pjsip.conf
    phone = environment(raw["softphone"])
    pjsip = (ASTERISK_CONFIG / "pjsip.conf").read_text()
    assert f"username = {phone['SMOKE_USER']}\npassword = {phone['SMOKE_PASSWORD']}\n" in pjsip
    for path in (COMPOSE, COMPOSE_SIMULATOR, BRIDGE_CONFIG):
        assert "sk-proj" not in path.read_text() and "OPENAI_API_KEY=" not in path.read_text()


def test_health_gates(stack: dict[str, Any]) -> None:
    services = stack["services"]
    # the smoke call waits for a booted Asterisk and a bridge logged in to AMI
    assert services["softphone"]["depends_on"] == {
        "asterisk": {"condition": "service_healthy"},
        "bridge": {"condition": "service_healthy"},
    }
    # Asterisk re-resolves the bridge's address when compose recreates the bridge; no
    # health condition there: the bridge is healthy only once Asterisk's AMI answers
    assert services["asterisk"]["depends_on"]["bridge"] == {
        "condition": "service_started",
        "restart": True,
    }
    assert "depends_on" not in load_compose(COMPOSE)["services"]["bridge"]
    # the simulator runs the bridge image, whose /healthz check does not apply to it
    assert "8765" in " ".join(services["simulator"]["healthcheck"]["test"])
    for path in ("asterisk/Dockerfile", "bridge/Dockerfile"):
        assert parse_dockerfile(DOCKER / path).final.all("HEALTHCHECK"), path


def test_makefile_targets() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target in ("up", "down", "logs", "smoke"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "-f docker/compose.yaml" in makefile
    assert "$(if $(OPENAI_API_KEY),,-f docker/compose.simulator.yaml)" in makefile
    assert "--profile smoke run --rm softphone" in makefile


def test_each_built_image_has_its_own_name(stack: dict[str, Any]) -> None:
    """Two services building one tag flip it between two image IDs at every build, so
    every `up` recreated both containers (a repeat `make smoke` took 95 s, not 20 s)."""
    built = {name: s["image"] for name, s in stack["services"].items() if "build" in s}
    assert set(built) == {"asterisk", "bridge", "simulator", "softphone"}
    assert len(set(built.values())) == len(built), built


def test_host_ports_from_the_environment() -> None:
    env = {
        "AGI_BRIDGE_SIP_PORT": "5070",
        "AGI_BRIDGE_RTP_START": "20000",
        "AGI_BRIDGE_RTP_END": "20049",
    }
    asterisk = load_compose(COMPOSE, env=env)["services"]["asterisk"]
    ports = {p.container_ports: p for p in published_ports(asterisk)}
    assert ports[(5060, 5060)].host_ports == (5070, 5070)  # SIP: only the host side moves
    assert ports[(20000, 20049)].host_ports == (20000, 20049)  # RTP: the SDP carries it
    assert set(ports) == {(5060, 5060), (20000, 20049)}
    # ... and Asterisk in the container uses that range (render-config.sh: rtp.conf)
    own = environment(asterisk)
    assert (own["AST_RTP_START"], own["AST_RTP_END"]) == ("20000", "20049")
    assert own["AST_EXTERNAL_SIGNALING_PORT"] == "5070"
    defaults = environment(load_compose(COMPOSE)["services"]["asterisk"])
    assert (defaults["AST_RTP_START"], defaults["AST_RTP_END"]) == (
        conf_value("rtp.conf", "general", "rtpstart"),
        conf_value("rtp.conf", "general", "rtpend"),
    )
