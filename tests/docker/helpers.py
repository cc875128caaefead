"""Reading the Docker files of docker/ without a Docker engine: compose files (with
interpolation and override merging as Compose does it for the keys used here) and
Dockerfiles (instructions, stages, ARG/ENV, COPY, RUN)."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
COMPOSE_SIMULATOR = DOCKER / "compose.simulator.yaml"
ASTERISK_CONFIG = REPO / "asterisk-config"
SCRIPTS = REPO / "scripts"
BRIDGE_CONFIG = DOCKER / "agi-bridge.yaml"

# A container on a compose network 172.18.0.0/16 plus a second network 10.5.0.0/24:
# default route via 172.18.0.1, two directly connected routes (little-endian hex).
ROUTES = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth1\t0000050A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""


# --- compose -----------------------------------------------------------------------------

_VAR = re.compile(
    r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose variable interpolation: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, $$."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?"):
            if not value:
                raise KeyError(f"{name}: {arg}")
            return value
        if op == ":+":
            return arg if value else ""
        if op == "+":
            return arg if value is not None else ""
        return value or ""

    return _VAR.sub(sub, value)


def variables(value: Any) -> list[re.Match[str]]:
    """Every ${...}/$VAR reference in a parsed compose document."""
    if isinstance(value, str):
        return [m for m in _VAR.finditer(value) if m.group(0) != "$$"]
    if isinstance(value, Mapping):
        return [m for k, v in value.items() for m in variables(k) + variables(v)]
    if isinstance(value, list):
        return [m for v in value for m in variables(v)]
    return []


def _interpolated(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, Mapping):
        return {k: _interpolated(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolated(v, env) for v in value]
    return value


def _merge(base: Any, override: Any, key: str = "") -> Any:
    """Compose's override merge for the keys docker/ uses: mappings merge key by key;
    ``command``/``entrypoint``/``healthcheck.test`` are replaced; ports and volumes append."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        out = dict(base)
        for k, v in override.items():
            out[k] = _merge(base[k], v, k) if k in base else v
        return out
    if isinstance(base, list) and isinstance(override, list) and key in ("ports", "volumes"):
        return base + [v for v in override if v not in base]
    return override


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment`` (mapping or KEY=VALUE list) as a dict of strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def load_compose(*files: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose model of ``files`` (merged in order), interpolated with ``env``
    (default: no variables set, as on a machine without a .env file)."""
    model: dict[str, Any] = {}
    for f in files:
        model = _merge(model, yaml.safe_load(f.read_text()))
    result: dict[str, Any] = _interpolated(model, env or {})
    return result


def raw_compose(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: not a mapping"
    return data


@dataclasses.dataclass(frozen=True)
class PublishedPort:
    host_ip: str
    host_ports: tuple[int, int]
    container_ports: tuple[int, int]
    protocol: str


def _port_range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    return int(lo), int(hi or lo)


def published_ports(service: Mapping[str, Any]) -> list[PublishedPort]:
    """The short-syntax ``ports`` of a service ("[IP:]HOST:CONTAINER[/proto]")."""
    out = []
    for entry in service.get("ports") or []:
        assert isinstance(entry, str), f"use the short port syntax: {entry!r}"
        spec, _, proto = entry.partition("/")
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            ip, host, container = parts
        elif len(parts) == 2:
            ip, (host, container) = "0.0.0.0", parts
        else:
            ip, host, container = "0.0.0.0", "", parts[0]
        out.append(
            PublishedPort(
                ip or "0.0.0.0",
                _port_range(host) if host else (0, 0),
                _port_range(container),
                proto or "tcp",
            )
        )
    return out


# --- Dockerfiles ---------------------------------------------------------------------------


@dataclasses.dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # the rest of the (joined) line
    line: int

    def json_args(self) -> list[str] | None:
        text = self.args.strip()
        if text.startswith("["):
            value = json.loads(text)
            assert isinstance(value, list)
            return [str(v) for v in value]
        return None

    def flags_and_words(self) -> tuple[dict[str, str], list[str]]:
        """``COPY --chmod=0755 a b /dest`` -> ({"chmod": "0755"}, ["a", "b", "/dest"])."""
        words = self.json_args() or shlex.split(self.args)
        flags = {}
        while words and words[0].startswith("--"):
            key, _, value = words.pop(0)[2:].partition("=")
            flags[key] = value
        return flags, words


@dataclasses.dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ins in self.all("ENV"):
            for word in shlex.split(ins.args):
                key, sep, value = word.partition("=")
                assert sep, f"ENV {ins.args!r}: use KEY=VALUE"
                out[key] = value
        return out

    def copies(self) -> list[tuple[dict[str, str], list[str], str]]:
        """(flags, sources, destination) of every COPY."""
        out = []
        for ins in self.all("COPY"):
            flags, words = ins.flags_and_words()
            out.append((flags, words[:-1], words[-1]))
        return out


@dataclasses.dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def base_image(self, stage: Stage) -> str:
        return interpolate(stage.base, self.global_args)


def parse_dockerfile(path: Path) -> Dockerfile:
    """Instructions with continuation lines joined and comments dropped, grouped by stage."""
    logical: list[tuple[int, str]] = []
    pending, start = "", 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continuation are ignored by Docker too
        if not pending:
            start = n
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append((start, pending + stripped))
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for n, text in logical:
        keyword, _, args = text.partition(" ")
        ins = Instruction(keyword.upper(), args.strip(), n)
        if ins.keyword == "FROM":
            words = ins.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name, []))
        elif not stages:
            assert ins.keyword == "ARG", f"{path}:{n}: only ARG may come before FROM"
            key, _, value = ins.args.partition("=")
            global_args[key] = value
        else:
            stages[-1].instructions.append(ins)
    assert stages, f"{path}: no FROM"
    return Dockerfile(path, global_args, stages)


def stage_args(stage: Stage) -> dict[str, str]:
    out = {}
    for ins in stage.all("ARG"):
        key, _, value = ins.args.partition("=")
        out[key] = value
    return out


def dockerignore_allows(ignore_file: Path, path: str) -> bool:
    """True when ``path`` (relative to the build context) is sent to the builder under an
    ignore file of the form used in docker/: ``*`` then ``!`` re-includes (dir or file)."""
    patterns = [
        line.strip()
        for line in ignore_file.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    allowed = False
    target = path.rstrip("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        p = pattern[1:] if negate else pattern
        p = p.rstrip("/")
        if p == "*" or target == p or target.startswith(p + "/"):
            allowed = negate
    return allowed
