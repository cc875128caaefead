"""Rules across keys, after the schema has loaded: routes name agents that exist, tools
are known, webhook tools and prices are sane, ARI is complete. Errors name the file, key
and line (``loader`` is load.py's ``_Loader``: node positions per key path)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from agi_bridge.config.schema import BUILTIN_TOOLS, ROUTE_MATCH_KEYS, TOOL_NAME_RE, Config
from agi_bridge.errors import ConfigError


def validate(cfg: Config, loader: Any) -> None:
    """Rules across keys: route agents exist, tools are known, webhook tools are sane."""

    def fail(path: str, message: str, *, key_line: bool = False) -> ConfigError:
        nodes = loader.key_nodes if key_line else loader.nodes
        node = nodes.get(path) or loader.nodes.get(path)
        shown = path
        # an agent key inherited from `defaults:` is reported where defaults sets it
        match = re.match(r"^(agents\.[^.\[]+)\.(\w+)(.*)$", path)
        if match:
            own = loader.nodes.get(f"{match[1]}.{match[2]}")
            origin = loader.inherited.get(id(own)) if own is not None else None
            if origin:
                shown = f"{origin}{match[3]} (inherited by {match[1]})"
        error: ConfigError = loader.error(node, shown, message)
        return error

    agents = ", ".join(cfg.agents) or "none"
    for i, route in enumerate(cfg.routes):
        where = f"routes[{i}]"
        if not route.agent:
            raise fail(where, "a route needs an agent")
        if route.agent not in cfg.agents:
            raise fail(f"{where}.agent", f"unknown agent {route.agent!r} (agents: {agents})")
        for key in ROUTE_MATCH_KEYS:
            value = getattr(route, key)
            for j, pattern in enumerate((value,) if isinstance(value, str) else value):
                if pattern.startswith("re:"):
                    try:
                        re.compile(pattern[3:])
                    except re.error as exc:
                        path = f"{where}.{key}" if isinstance(value, str) else f"{where}.{key}[{j}]"
                        raise fail(path, f"bad regular expression: {exc}") from None

    for name, tool in cfg.tools.items():
        where = f"tools.{name}"
        if name in BUILTIN_TOOLS:
            raise fail(
                where,
                f"tool name {name!r} clashes with a built-in tool ({', '.join(BUILTIN_TOOLS)})",
                key_line=True,
            )
        if not TOOL_NAME_RE.match(name):
            raise fail(where, "a tool name is 1-64 letters, digits, '_' or '-'", key_line=True)
        url = urlsplit(tool.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise fail(f"{where}.url", f"expected an http:// or https:// URL, got {tool.url!r}")
        if tool.parameters.get("type") != "object" or not isinstance(
            tool.parameters.get("properties", {}), Mapping
        ):
            raise fail(
                f"{where}.parameters",
                "expected an object schema: {type: object, properties: {...}}",
            )
        if tool.timeout_s <= 0:
            raise fail(f"{where}.timeout_s", "must be > 0")
        if tool.max_response_chars < 1:
            raise fail(f"{where}.max_response_chars", "must be >= 1")
        for header, var in tool.headers_env.items():
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", header):
                raise fail(f"{where}.headers_env.{header}", "invalid HTTP header name")
            if not var:
                raise fail(f"{where}.headers_env.{header}", "expected an environment variable")

    _validate_ari(cfg, fail)
    for name, price in cfg.prices.items():
        mapped = cfg.prices.get(price.same_as) if price.same_as else None
        if price.same_as and (mapped is None or mapped.same_as):
            raise fail(
                f"prices.{name}.same_as",
                f"no price entry {price.same_as!r} with prices of its own",
            )

    known_tools = (*BUILTIN_TOOLS, *cfg.tools)
    for name, agent in cfg.agents.items():
        where = f"agents.{name}"
        for i, tool_name in enumerate(agent.tools):
            if tool_name not in known_tools:
                raise fail(
                    f"{where}.tools[{i}]",
                    f"unknown tool {tool_name!r}, expected {', '.join(known_tools)}",
                )
        if agent.truncation and agent.truncation_retention_ratio is not None:
            raise fail(
                f"{where}.truncation_retention_ratio",
                "set truncation or truncation_retention_ratio, not both",
            )
        if "transfer" in agent.tools and not agent.transfer_targets:
            raise fail(f"{where}.tools", "transfer needs transfer_targets for this agent")
        if "collect_digits" in agent.tools and agent.collect_digits_webhook not in cfg.tools:
            raise fail(
                f"{where}.collect_digits_webhook"
                if agent.collect_digits_webhook
                else f"{where}.tools",
                "collect_digits needs collect_digits_webhook: the name of a webhook in tools:"
                f" (tools: {', '.join(cfg.tools) or 'none'})",
            )
        if agent.lookup_webhook and agent.lookup_webhook not in cfg.tools:
            raise fail(
                f"{where}.lookup_webhook",
                f"unknown webhook {agent.lookup_webhook!r} "
                f"(tools: {', '.join(cfg.tools) or 'none'})",
            )
        if "switch_agent" in agent.tools and not agent.handoff_agents:
            raise fail(f"{where}.tools", "switch_agent needs handoff_agents for this agent")
        for target_name, target in agent.transfer_targets.items():
            path = f"{where}.transfer_targets.{target_name}"
            if not TOOL_NAME_RE.match(target_name):
                raise fail(path, "a transfer target name is 1-64 letters, digits, '_' or '-'")
            if not target.context or not target.exten:
                raise fail(path, "a transfer target needs context and exten")
            if target.priority < 1:
                raise fail(f"{path}.priority", "must be >= 1")
        for i, other in enumerate(agent.handoff_agents):
            if other not in cfg.agents:
                raise fail(
                    f"{where}.handoff_agents[{i}]",
                    f"unknown agent {other!r} (agents: {agents})",
                )
            if other == name:
                raise fail(f"{where}.handoff_agents[{i}]", "an agent cannot hand off to itself")


def _validate_ari(cfg: Config, fail: Any) -> None:
    ari = cfg.ari
    url = urlsplit(ari.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise fail("ari.url", f"expected an http:// or https:// URL, got {ari.url!r}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", ari.app):
        raise fail("ari.app", "a Stasis application name is 1-64 letters, digits, '_', '.', '-'")
    if ari.enabled and not ari.username:
        raise fail("ari.username", "ARI needs a username (ari.conf)")
    try:
        ipaddress.ip_address(ari.rtp_host)
    except ValueError:
        raise fail("ari.rtp_host", f"expected an IP address, got {ari.rtp_host!r}") from None
    for key in ("rtp_port_min", "rtp_port_max"):
        if not 1 <= getattr(ari, key) <= 65535:
            raise fail(f"ari.{key}", "expected a port 1..65535")
    if ari.rtp_port_min > ari.rtp_port_max:
        raise fail("ari.rtp_port_max", "must be >= ari.rtp_port_min")
    ws = urlsplit(ari.websocket_url)
    if ari.websocket_url and (ws.scheme not in ("ws", "wss") or not ws.hostname):
        raise fail(
            "ari.websocket_url", f"expected a ws:// or wss:// URL, got {ari.websocket_url!r}"
        )
    if ari.request_timeout_s <= 0:
        raise fail("ari.request_timeout_s", "must be > 0")
    if ari.reconnect_max_s <= 0:
        raise fail("ari.reconnect_max_s", "must be > 0")
