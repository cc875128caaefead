"""Configuration: one YAML file -> frozen dataclasses, validated before anything runs.

Every key has a default (the dataclass field), unknown keys are errors, and every error
names the file, the key path and the line: ``config.yaml:14 agents.sales.voice: unknown
voice 'bob', expected one of alloy, ash, ...``. YAML is read with the safe loader; line
numbers come from the composed node tree.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from agi_bridge.config.retirements import locator, retirement_warnings
from agi_bridge.config.schema import (
    DEFAULT_PRICES,
    Agent,
    Config,
    _Raw,
)
from agi_bridge.config.validate import validate
from agi_bridge.errors import ConfigError
from agi_bridge.protocol.realtime import (
    EAGERNESS,
    NOISE_REDUCTION,
    REASONING_EFFORTS,
    TRUNCATIONS,
    VOICE_NAME_RE,
    VOICES,
)

# ----------------------------------------------------------------------------- loading

_NOT_KEYS = {"source", "warnings"}


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Loader:
    def __init__(self, file: str, *, lines: bool = True) -> None:
        self.file = file
        self.lines = lines  # False for values that come from the environment
        # Every key path -> its value node and its key node, for checks after loading.
        self.nodes: dict[str, yaml.Node] = {}
        self.key_nodes: dict[str, yaml.Node] = {}
        # Value nodes an agent inherited from `defaults:` -> their path there.
        self.inherited: dict[int, str] = {}
        # "file:line key: why" for values that load but deserve a look (ordered, unique)
        self.warnings: dict[str, None] = {}

    def warn(self, node: yaml.Node | None, key: str, message: str) -> None:
        line = f":{_line(node)}" if node is not None and self.lines else ""
        self.warnings[f"{self.file}{line} {key}: {message}"] = None

    def error(self, node: yaml.Node | None, key: str, message: str) -> ConfigError:
        line = _line(node) if node is not None and self.lines else None
        return ConfigError(message, file=self.file, key=key, line=line)

    def scalar(self, node: yaml.Node) -> Any:
        return yaml.safe_load(yaml.serialize(node))

    def convert(self, node: yaml.Node, tp: Any, key: str) -> Any:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is Any:  # free-form data (a JSON schema): plain Python values
            return self.scalar(node)
        if origin is Annotated:
            if _Raw in args[1:] and isinstance(node, yaml.ScalarNode):
                return "" if node.tag.endswith(":null") else str(node.value)
            return self.convert(node, args[0], key)
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
            for i, item in enumerate(node.value):
                self.nodes[f"{key}[{i}]"] = item
            return tuple(
                self.convert(item, args[0], f"{key}[{i}]") for i, item in enumerate(node.value)
            )
        if origin in (Mapping, dict):
            if not isinstance(node, yaml.MappingNode):
                raise self.error(node, key, "expected a mapping")
            out = {}
            for knode, vnode in node.value:
                name = str(self.scalar(knode))
                self.nodes[f"{key}.{name}"] = vnode
                self.key_nodes[f"{key}.{name}"] = knode
                out[name] = self.convert(vnode, args[1], f"{key}.{name}")
            return types.MappingProxyType(out)
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, key, f"expected {_a(tp.__name__)}, got a {_kind(node)}")
        value = self.scalar(node)
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if tp is str and value is None:
            value = ""
        if type(value) is not tp:
            raise self.error(node, key, f"expected {_a(tp.__name__)}, got {value!r}")
        return value

    def dataclass(self, node: yaml.Node, tp: Any, key: str) -> Any:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return tp()
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, key or "(top level)", f"expected a mapping, got {_kind(node)}")
        hints = typing.get_type_hints(tp, include_extras=True)
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
            self.nodes[path] = vnode
            self.key_nodes[path] = knode
            kwargs[name] = self.convert(vnode, hints[name], path)
            self.check(vnode, path, name, kwargs[name])
        return tp(**kwargs)

    def check(self, node: yaml.Node, path: str, name: str, value: Any) -> None:
        """Value rules that a type cannot express."""
        if name == "voice" and value not in VOICES:
            # New voices appear over time and custom voices exist (openai-python
            # realtime_audio_config_output_param.py: Voice = str | Literal[...] | {id}):
            # a plausible name loads with a warning, anything else is a typo.
            if not VOICE_NAME_RE.fullmatch(value):
                raise self.error(
                    node, path, f"not a voice name {value!r} (built-in: {', '.join(VOICES)})"
                )
            if id(node) not in self.inherited:  # said once, as defaults.voice
                self.warn(node, path, f"voice {value!r} is not one of {', '.join(VOICES)}")
        if name == "reasoning_effort" and value and value not in REASONING_EFFORTS:
            raise self.error(node, path, f"expected one of {', '.join(REASONING_EFFORTS)} or ''")
        if name == "truncation" and value and value not in TRUNCATIONS:
            raise self.error(node, path, f"expected one of {', '.join(TRUNCATIONS)} or ''")
        if name == "truncation_retention_ratio" and value is not None and not 0 <= value <= 1:
            raise self.error(node, path, f"expected a fraction 0..1, got {value}")
        if name == "eagerness" and value not in EAGERNESS:
            raise self.error(node, path, f"expected one of {', '.join(EAGERNESS)}")
        if name == "noise_reduction" and value and value not in NOISE_REDUCTION:
            raise self.error(node, path, f"expected one of {', '.join(NOISE_REDUCTION)} or ''")
        if name == "max_output_tokens" and value != "inf" and not 1 <= value <= 4096:
            raise self.error(node, path, "expected 1..4096 or 'inf'")
        if name in ("audiosocket", "fastagi") or (name == "http" and value):
            _split_hostport(value, lambda m: self.error(node, path, m))
        if name == "addresses":
            for i, item in enumerate(value):
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise self.error(
                        node, f"{path}[{i}]", f"not an IP address or network: {item!r}"
                    ) from None
        if path == "webhook.url" and value and not value.startswith(("http://", "https://")):
            raise self.error(node, path, f"expected an http:// or https:// URL, got {value!r}")
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and value < 0
            and (
                name.endswith(("_ms", "_s", "port", "max_calls", "_days", "retries", "_size"))
                or path.startswith("prices.")
            )
        ):
            raise self.error(node, path, f"must not be negative, got {value}")


_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def _a(type_name: str) -> str:
    return _TYPE_WORDS.get(type_name, f"a {type_name}")


def _kind(node: yaml.Node) -> str:
    return {
        yaml.ScalarNode: "scalar",
        yaml.SequenceNode: "list",
        yaml.MappingNode: "mapping",
    }.get(type(node), "node")


def _split_hostport(value: str, err: Any) -> tuple[str, int]:
    """HOST:PORT, IPv6 as ``[::1]:PORT``; a bare IPv6 address needs the brackets."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise err(f"expected HOST:PORT, got {value!r}")
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise err(f"expected [IPv6]:PORT, got {value!r}")
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise err(f"not an IPv6 address in {value!r}") from None
    elif ":" in host:
        raise err(f"an IPv6 address needs brackets: [{host}]:{port}, got {value!r}")
    return host, int(port)


def split_hostport(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9092"`` -> ``("127.0.0.1", 9092)`` (validated at load time)."""

    def err(message: str) -> ConfigError:
        return ConfigError(message)

    return _split_hostport(value, err)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost`` (an address only this machine reaches)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------ agent defaults


def _merge_defaults(root: yaml.Node, loader: _Loader) -> None:
    """Give every agent node the keys of ``defaults:`` it does not set itself.

    The merge is done on the YAML nodes, so an agent's own keys keep their lines and an
    inherited value keeps the line where ``defaults:`` sets it. ``defaults`` is checked on
    its own first, so a bad value there is reported once, as ``defaults.KEY``. Sections
    (``turn_detection``) merge key by key; lists and maps (tools, transfer_targets) are
    replaced as a whole by an agent that sets them.
    """
    if not isinstance(root, yaml.MappingNode):
        return
    top = {str(loader.scalar(k)): (k, v) for k, v in root.value}
    if "defaults" not in top:
        return
    dkey, defaults = top["defaults"]
    loader.dataclass(defaults, Agent, "defaults")  # errors name defaults.KEY
    if not isinstance(defaults, yaml.MappingNode):
        return  # null: nothing to inherit
    _mark_inherited(defaults, Agent, "defaults", loader)
    if "agents" not in top:
        # no agents section: the one default agent inherits the defaults
        name = yaml.ScalarNode("tag:yaml.org,2002:str", "default", dkey.start_mark, dkey.end_mark)
        agents = yaml.MappingNode("tag:yaml.org,2002:map", [(name, defaults)], dkey.start_mark)
        key = yaml.ScalarNode("tag:yaml.org,2002:str", "agents", dkey.start_mark, dkey.end_mark)
        root.value.append((key, agents))
        return
    agents = top["agents"][1]
    if not isinstance(agents, yaml.MappingNode):
        return  # the loader reports it
    agents.value = [(k, _merged(defaults, v, Agent)) for k, v in agents.value]


def _mark_inherited(node: yaml.MappingNode, tp: Any, path: str, loader: _Loader) -> None:
    hints = typing.get_type_hints(tp, include_extras=True)
    for knode, vnode in node.value:
        name = str(loader.scalar(knode))
        loader.inherited[id(vnode)] = f"{path}.{name}"
        if isinstance(vnode, yaml.MappingNode) and dataclasses.is_dataclass(hints.get(name)):
            _mark_inherited(vnode, hints[name], f"{path}.{name}", loader)


def _merged(base: yaml.MappingNode, node: yaml.Node, tp: Any) -> yaml.Node:
    if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
        node = yaml.MappingNode("tag:yaml.org,2002:map", [], node.start_mark, node.end_mark)
    if not isinstance(node, yaml.MappingNode):
        return node  # not a mapping: the loader reports it
    hints = typing.get_type_hints(tp, include_extras=True)
    own = {str(k.value): v for k, v in node.value if isinstance(k, yaml.ScalarNode)}
    merged_sections = []
    for k, v in node.value:
        name = str(k.value)
        inherited = next((dv for dk, dv in base.value if str(dk.value) == name), None)
        section = hints.get(name)
        if isinstance(inherited, yaml.MappingNode) and dataclasses.is_dataclass(section):
            v = _merged(inherited, v, section)
        merged_sections.append((k, v))
    inherited_pairs = [(k, v) for k, v in base.value if str(k.value) not in own]
    return yaml.MappingNode(
        node.tag, inherited_pairs + merged_sections, node.start_mark, node.end_mark
    )


# -------------------------------------------------------- environment overrides

ENV_PREFIX = "AGI_BRIDGE_"
# AGI_BRIDGE_<SECTION>_<KEY> overrides <section>.<key> for these sections (addresses,
# ports, credentials' locations): AGI_BRIDGE_LISTEN_AUDIOSOCKET, AGI_BRIDGE_AMI_HOST, ...
ENV_SECTIONS = ("listen", "ami", "ari", "asterisk", "realtime")


def env_overrides(section: str) -> dict[str, str]:
    """``{environment variable: key}`` of one overridable section."""
    tp = typing.get_type_hints(Config)[section]
    return {
        f"{ENV_PREFIX}{section.upper()}_{f.name.upper()}": f.name for f in dataclasses.fields(tp)
    }


def _apply_env(cfg: Config, env: Mapping[str, str]) -> Config:
    loader = _Loader("environment", lines=False)
    changes: dict[str, Any] = {}
    for section in ENV_SECTIONS:
        current = getattr(cfg, section)
        hints = typing.get_type_hints(type(current), include_extras=True)
        values: dict[str, Any] = {}
        for var, name in env_overrides(section).items():
            if var not in env:
                continue
            if hints[name] is str:
                # Taken as written: YAML would read "[::1]:8088" as a flow sequence.
                values[name] = env[var]
                loader.check(
                    yaml.ScalarNode("tag:yaml.org,2002:str", env[var]), var, name, env[var]
                )
                continue
            try:
                node = yaml.compose(env[var], Loader=yaml.SafeLoader)
            except yaml.YAMLError:
                node = None
            if node is None:
                node = yaml.ScalarNode("tag:yaml.org,2002:null", "")
            if not isinstance(node, yaml.ScalarNode):
                node = yaml.ScalarNode("tag:yaml.org,2002:str", env[var])
            values[name] = loader.convert(node, hints[name], var)
            loader.check(node, var, name, values[name])
        if values:
            changes[section] = dataclasses.replace(current, **values)
    return dataclasses.replace(cfg, **changes) if changes else cfg


# ------------------------------------------------------------- cross-references


def load_text(text: str, file: str = "<string>", *, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate config text; ``env`` (e.g. ``os.environ``) may override keys of
    the ``listen``, ``ami`` and ``realtime`` sections (see ``ENV_SECTIONS``)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"not valid YAML: {exc}", file=file, line=line) from exc
    loader = _Loader(file)
    if node is not None:
        _merge_defaults(node, loader)
    cfg = loader.dataclass(node, Config, "") if node is not None else Config()
    if env:
        cfg = _apply_env(cfg, env)
    # `prices:` in the file adds to (or overrides) the published defaults
    prices = types.MappingProxyType({**DEFAULT_PRICES, **cfg.prices})
    cfg = dataclasses.replace(cfg, source=file, prices=prices, warnings=tuple(loader.warnings))
    if cfg.default_agent not in cfg.agents:
        raise ConfigError(
            f"no agent named {cfg.default_agent!r} (agents: {', '.join(cfg.agents) or 'none'})",
            file=file,
            key="default_agent",
            line=_line(loader.nodes["default_agent"]) if "default_agent" in loader.nodes else None,
        )
    validate(cfg, loader)
    # models with an announced shutdown date: loads, with a warning naming where
    where = locator(loader.file, loader.nodes, loader.inherited)
    retiring = retirement_warnings(cfg, dt.date.today(), where)
    return dataclasses.replace(cfg, warnings=(*cfg.warnings, *retiring))


def load(path: str | os.PathLike[str] | None) -> Config:
    """Load and validate a config file; ``None`` gives the built-in defaults."""
    if path is None:
        return _apply_env(Config(), os.environ)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(p)) from exc
    return load_text(text, str(p), env=os.environ)
