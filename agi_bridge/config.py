"""Configuration: one YAML file -> frozen dataclasses, validated before anything runs.

Every key has a default (the dataclass field), unknown keys are errors, and every error
names the file, the key path and the line: ``config.yaml:14 agents.sales.voice: unknown
voice 'bob', expected one of alloy, ash, ...``. YAML is read with the safe loader; line
numbers come from the composed node tree.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from agi_bridge.errors import ConfigError
from agi_bridge.protocol.realtime import EAGERNESS, NOISE_REDUCTION, VOICES

DEFAULT_INSTRUCTIONS = (
    "You are a helpful voice assistant answering a phone call. Keep answers short and "
    "conversational; this is a phone line, so never use lists, markdown or emoji."
)
DEFAULT_GREETING = "Greet the caller briefly and ask how you can help."


@dataclass(frozen=True)
class Listen:
    audiosocket: str = "127.0.0.1:9092"
    fastagi: str = "127.0.0.1:4573"


@dataclass(frozen=True)
class Ami:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "agi_bridge"
    secret_env: str = "AGI_BRIDGE_AMI_SECRET"
    secret_file: str = ""
    action_timeout_s: float = 5.0


@dataclass(frozen=True)
class Realtime:
    # openai: wss://api.openai.com/v1/realtime (Bearer); azure: RESOURCE url + api-key header;
    # url: any compatible server (Bearer); simulator: the bundled test double, in-process.
    provider: Literal["openai", "azure", "url", "simulator"] = "openai"
    url: str = ""
    model: str = "gpt-realtime"
    api_key_env: str = "OPENAI_API_KEY"
    # With provider openai and no key in api_key_env, run against the bundled simulator
    # (the offline demo) instead of failing every call.
    simulator_without_key: bool = True
    connect_timeout_s: float = 10.0


@dataclass(frozen=True)
class TurnDetectionConfig:
    type: Literal["semantic_vad", "server_vad", "none"] = "semantic_vad"
    eagerness: str = "auto"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    idle_timeout_ms: int | None = None
    interrupt_response: bool = True


@dataclass(frozen=True)
class Agent:
    instructions: str = DEFAULT_INSTRUCTIONS
    # What the agent is told to say when the call connects; empty = wait for the caller.
    greeting: str = DEFAULT_GREETING
    voice: str = "marin"
    speed: float = 1.0
    model: str = ""  # empty: realtime.model
    turn_detection: TurnDetectionConfig = field(default_factory=TurnDetectionConfig)
    transcription_model: str = "gpt-4o-mini-transcribe"
    language: str = ""
    noise_reduction: str = ""
    max_output_tokens: int | Literal["inf"] = "inf"
    tools: tuple[str, ...] = ("send_dtmf", "hangup")
    ivr_guidance: bool = True  # append the IVR-navigation prompt when send_dtmf is enabled
    caller_dtmf_to_model: bool = True


@dataclass(frozen=True)
class Dtmf:
    duration_ms: int = 100
    gap_ms: int = 100
    pause_ms: int = 500  # what a 'w' in a digit string waits


@dataclass(frozen=True)
class Limits:
    max_calls: int = 200
    max_call_s: float = 3600.0
    playout_buffer_ms: int = 120_000
    hangup_drain_timeout_s: float = 15.0
    registration_ttl_s: float = 30.0
    first_frame_timeout_s: float = 10.0  # AudioSocket: UUID must arrive by then


@dataclass(frozen=True)
class Config:
    listen: Listen = field(default_factory=Listen)
    ami: Ami = field(default_factory=Ami)
    realtime: Realtime = field(default_factory=Realtime)
    agents: Mapping[str, Agent] = field(default_factory=lambda: {"default": Agent()})
    default_agent: str = "default"
    dtmf: Dtmf = field(default_factory=Dtmf)
    limits: Limits = field(default_factory=Limits)
    source: str = ""  # the file it came from (not a YAML key)

    def agent(self, name: str | None) -> tuple[str, Agent]:
        """The named agent, or the default one when the name is empty or unknown."""
        if name and name in self.agents:
            return name, self.agents[name]
        return self.default_agent, self.agents[self.default_agent]

    def ami_secret(self) -> str:
        if self.ami.secret_file:
            return Path(self.ami.secret_file).read_text().strip()
        return os.environ.get(self.ami.secret_env, "")


# ----------------------------------------------------------------------------- loading

_NOT_KEYS = {"source"}


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Loader:
    def __init__(self, file: str) -> None:
        self.file = file

    def error(self, node: yaml.Node | None, key: str, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, key=key, line=_line(node) if node else None)

    def scalar(self, node: yaml.Node) -> Any:
        return yaml.safe_load(yaml.serialize(node))

    def convert(self, node: yaml.Node, tp: Any, key: str) -> Any:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if dataclasses.is_dataclass(tp):
            return self.dataclass(node, tp, key)
        if origin in (types.UnionType, typing.Union):
            is_null = isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")
            if is_null and type(None) in args:
                return None
            errors = []
            for arg in args:
                if arg is type(None):
                    continue
                try:
                    return self.convert(node, arg, key)
                except ConfigError as exc:
                    errors.append(exc.reason)
            raise self.error(node, key, " or ".join(errors))
        if origin is Literal:
            value = self.scalar(node)
            if value not in args:
                allowed = ", ".join(repr(a) for a in args)
                raise self.error(node, key, f"got {value!r}, expected one of {allowed}")
            return value
        if origin is tuple:
            if not isinstance(node, yaml.SequenceNode):
                raise self.error(node, key, "expected a list")
            return tuple(
                self.convert(item, args[0], f"{key}[{i}]") for i, item in enumerate(node.value)
            )
        if origin in (Mapping, dict):
            if not isinstance(node, yaml.MappingNode):
                raise self.error(node, key, "expected a mapping")
            out = {}
            for knode, vnode in node.value:
                name = str(self.scalar(knode))
                out[name] = self.convert(vnode, args[1], f"{key}.{name}")
            return types.MappingProxyType(out)
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, key, f"expected a {tp.__name__}, got a {_kind(node)}")
        value = self.scalar(node)
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if tp is str and value is None:
            value = ""
        if type(value) is not tp:
            raise self.error(node, key, f"expected a {tp.__name__}, got {value!r}")
        return value

    def dataclass(self, node: yaml.Node, tp: Any, key: str) -> Any:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return tp()
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, key or "(top level)", f"expected a mapping, got {_kind(node)}")
        hints = typing.get_type_hints(tp)
        fields = {f.name for f in dataclasses.fields(tp)} - _NOT_KEYS
        kwargs: dict[str, Any] = {}
        for knode, vnode in node.value:
            name = str(self.scalar(knode))
            path = f"{key}.{name}" if key else name
            if name not in fields:
                known = ", ".join(sorted(fields))
                raise self.error(knode, path, f"unknown key, expected one of {known}")
            if name in kwargs:
                raise self.error(knode, path, "key given twice")
            kwargs[name] = self.convert(vnode, hints[name], path)
            self.check(vnode, path, name, kwargs[name])
        return tp(**kwargs)

    def check(self, node: yaml.Node, path: str, name: str, value: Any) -> None:
        """Value rules that a type cannot express."""
        if name == "voice" and value not in VOICES:
            raise self.error(
                node, path, f"unknown voice {value!r}, expected one of {', '.join(VOICES)}"
            )
        if name == "eagerness" and value not in EAGERNESS:
            raise self.error(node, path, f"expected one of {', '.join(EAGERNESS)}")
        if name == "noise_reduction" and value and value not in NOISE_REDUCTION:
            raise self.error(node, path, f"expected one of {', '.join(NOISE_REDUCTION)} or ''")
        if name == "max_output_tokens" and value != "inf" and not 1 <= value <= 4096:
            raise self.error(node, path, "expected 1..4096 or 'inf'")
        if name in ("audiosocket", "fastagi"):
            _split_hostport(value, lambda m: self.error(node, path, m))
        if name == "tools":
            unknown = [t for t in value if t not in KNOWN_TOOLS]
            if unknown:
                raise self.error(
                    node, path, f"unknown tool {unknown[0]!r}, expected {', '.join(KNOWN_TOOLS)}"
                )
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and value < 0
            and name.endswith(("_ms", "_s", "port", "max_calls"))
        ):
            raise self.error(node, path, f"must not be negative, got {value}")


KNOWN_TOOLS = ("send_dtmf", "hangup")


def _kind(node: yaml.Node) -> str:
    return {
        yaml.ScalarNode: "scalar",
        yaml.SequenceNode: "list",
        yaml.MappingNode: "mapping",
    }.get(type(node), "node")


def _split_hostport(value: str, err: Any) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise err(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def split_hostport(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9092"`` -> ``("127.0.0.1", 9092)`` (validated at load time)."""

    def err(message: str) -> ConfigError:
        return ConfigError(message)

    return _split_hostport(value, err)


def load_text(text: str, file: str = "<string>") -> Config:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"not valid YAML: {exc}", file=file, line=line) from exc
    loader = _Loader(file)
    cfg = loader.dataclass(node, Config, "") if node is not None else Config()
    cfg = dataclasses.replace(cfg, source=file)
    if cfg.default_agent not in cfg.agents:
        raise ConfigError(
            f"no agent named {cfg.default_agent!r} (agents: {', '.join(cfg.agents) or 'none'})",
            file=file,
            key="default_agent",
        )
    return cfg


def load(path: str | os.PathLike[str] | None) -> Config:
    """Load and validate a config file; ``None`` gives the built-in defaults."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(p)) from exc
    return load_text(text, str(p))
