"""Agents, routes, agent defaults, transfer targets, webhook tools and env overrides in the
config: what loads, and each class of error with its message, key path and line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agi_bridge.admin import check_admin_auth
from agi_bridge.config import (
    ConfigError,
    TransferTarget,
    env_overrides,
    is_loopback,
    load,
    load_text,
)
from agi_bridge.tools import ToolSet, call_webhook

FILE = "bridge.yaml"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agi-bridge.yaml"

GOOD = """\
defaults:
  voice: cedar
  language: en
  turn_detection: {type: server_vad, silence_duration_ms: 400}
  tools: [hangup, lookup_order]
default_agent: reception
agents:
  reception:
    description: Front desk
    instructions: You answer calls for Example Corp.
    transfer_targets:
      sales: {context: from-agents, exten: 200, description: Sales team}
      operator: {context: from-agents, exten: "0", priority: 2}
    handoff_agents: [billing]
  billing:
    description: Invoices and payments
    voice: ash
    turn_detection: {silence_duration_ms: 700}
    tools: [hangup]
routes:
  - {dnid: "5551000", agent: billing}
  - {dnid: [0123, "0124"], agent: reception}
  - {caller_id: "re:\\\\+4420.*", context: from-pstn, agent: billing}
tools:
  lookup_order:
    description: Look up an order
    parameters:
      type: object
      properties: {order: {type: string}}
      required: [order]
    url: https://crm.example.com/orders
    headers_env: {Authorization: CRM_TOKEN}
"""


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(text, FILE)
    return info.value


def test_good_file_loads_with_defaults_merged() -> None:
    cfg = load_text(GOOD, FILE)
    reception, billing = cfg.agents["reception"], cfg.agents["billing"]
    # inherited from defaults
    assert reception.voice == "cedar" and reception.language == "en"
    assert reception.tools == ("hangup", "lookup_order")
    assert reception.turn_detection.type == "server_vad"
    assert reception.turn_detection.silence_duration_ms == 400
    # set by the agent: wins; sections merge key by key, lists are replaced
    assert billing.voice == "ash"
    assert billing.language == "en"
    assert billing.turn_detection.type == "server_vad"
    assert billing.turn_detection.silence_duration_ms == 700
    assert billing.tools == ("hangup",)
    # dial strings are kept as written (0123 is not octal 83)
    assert reception.transfer_targets["sales"] == TransferTarget(
        "from-agents", "200", 1, "Sales team"
    )
    assert reception.transfer_targets["operator"].priority == 2
    assert cfg.routes[1].dnid == ("0123", "0124")
    assert dict(cfg.tools["lookup_order"].parameters)["required"] == ["order"]


def test_defaults_alone_apply_to_the_default_agent() -> None:
    cfg = load_text("defaults: {voice: ash, greeting: ''}\n", FILE)
    assert cfg.agents["default"].voice == "ash"
    assert cfg.agents["default"].greeting == ""


def test_example_file_documents_the_new_sections() -> None:
    cfg = load_text(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE))
    assert cfg.routes, "the example shows routes"
    assert cfg.tools, "the example shows a webhook tool"
    assert any(a.transfer_targets for a in cfg.agents.values())
    assert any(a.handoff_agents for a in cfg.agents.values())


# ------------------------------------------------------------------------------ routing


@pytest.mark.parametrize(
    ("call", "agent", "why"),
    [
        ({"dnid": "5551000"}, "billing", "routes[0]"),
        ({"dnid": "0124"}, "reception", "routes[1]"),
        ({"caller_id": "+442071234", "context": "from-pstn"}, "billing", "routes[2]"),
        ({"caller_id": "+442071234", "context": "internal"}, "reception", "default_agent"),
        ({"caller_id": "x+4420", "context": "from-pstn"}, "reception", "default_agent"),
        ({"agi_arg": "billing"}, "billing", "AGI argument"),
        ({"agi_arg": "nobody"}, "reception", "default_agent"),
        ({"dnid": "5551000", "agi_arg": "reception"}, "billing", "routes[0]"),
    ],
)
def test_route_first_match_wins(call: dict[str, str], agent: str, why: str) -> None:
    cfg = load_text(GOOD, FILE)
    assert cfg.route(**call) == (agent, why)


def test_route_on_extension_and_agi_arg() -> None:
    cfg = load_text(
        "agents: {default: {}, ivr: {}}\n"
        "routes:\n  - {extension: '7', agi_arg: menu, agent: ivr}\n",
        FILE,
    )
    assert cfg.route(extension="7", agi_arg="menu") == ("ivr", "routes[0]")
    assert cfg.route(extension="7") == ("default", "default_agent")


# ------------------------------------------------------------------------------- errors


def test_unknown_key_in_a_route() -> None:
    exc = error("routes:\n  - {dnis: '1', agent: default}\n")
    assert str(exc).startswith("bridge.yaml:2 routes[0].dnis: unknown key, expected one of ")


def test_bad_type_in_a_transfer_target() -> None:
    text = (
        "agents:\n  default:\n    transfer_targets:\n"
        "      a: {context: c, exten: '1', priority: x}\n"
    )
    exc = error(text)
    assert str(exc) == (
        "bridge.yaml:4 agents.default.transfer_targets.a.priority: expected an integer, got 'x'"
    )


def test_unknown_voice_in_defaults_warns_once_naming_defaults() -> None:
    cfg = load_text("defaults:\n  voice: bob\nagents:\n  default: {}\n  b: {}\n", FILE)
    assert len(cfg.warnings) == 1
    assert cfg.warnings[0].startswith("bridge.yaml:2 defaults.voice: voice 'bob' is not one of")
    assert cfg.agents["b"].voice == "bob"


def test_bad_voice_in_an_agent_keeps_its_line_despite_defaults() -> None:
    exc = error("defaults:\n  voice: ash\nagents:\n  default:\n    greeting: ''\n    voice: B!\n")
    assert (exc.line, exc.key) == (6, "agents.default.voice")


def test_unknown_route_agent() -> None:
    exc = error("agents:\n  default: {}\nroutes:\n  - dnid: '100'\n    agent: sales\n")
    assert str(exc) == "bridge.yaml:5 routes[0].agent: unknown agent 'sales' (agents: default)"


def test_route_without_agent_and_bad_regex() -> None:
    assert str(error("routes:\n  - {dnid: '1'}\n")) == (
        "bridge.yaml:2 routes[0]: a route needs an agent"
    )
    exc = error("routes:\n  - {caller_id: 're:(', agent: default}\n")
    assert exc.key == "routes[0].caller_id" and exc.line == 2
    assert "bad regular expression" in str(exc)


def test_unknown_tool_inherited_from_defaults_points_at_defaults() -> None:
    exc = error("defaults:\n  tools: [hangup, fax]\nagents:\n  default: {}\n")
    assert str(exc) == (
        "bridge.yaml:2 defaults.tools[1] (inherited by agents.default): unknown tool 'fax', "
        "expected send_dtmf, hangup, transfer, switch_agent, collect_digits"
    )


def test_transfer_in_tools_without_targets() -> None:
    exc = error("agents:\n  default:\n    tools: [hangup, transfer]\n")
    assert str(exc) == (
        "bridge.yaml:3 agents.default.tools: transfer needs transfer_targets for this agent"
    )


def test_transfer_target_needs_context_and_exten() -> None:
    exc = error("agents:\n  default:\n    transfer_targets:\n      sales: {exten: '200'}\n")
    assert str(exc) == (
        "bridge.yaml:4 agents.default.transfer_targets.sales: "
        "a transfer target needs context and exten"
    )


def test_unknown_handoff_agent() -> None:
    exc = error("agents:\n  default:\n    handoff_agents: [billing]\n")
    assert str(exc) == (
        "bridge.yaml:3 agents.default.handoff_agents[0]: unknown agent 'billing' (agents: default)"
    )
    exc = error("agents:\n  default:\n    handoff_agents: [default]\n")
    assert "cannot hand off to itself" in str(exc)


def test_switch_agent_in_tools_without_handoff_agents() -> None:
    exc = error("agents:\n  default:\n    tools: [switch_agent]\n")
    assert "switch_agent needs handoff_agents" in str(exc)


WEBHOOK = """\
tools:
  {name}:
    url: {url}
    parameters: {parameters}
"""


def webhook_error(
    name: str = "lookup", url: str = "https://x.example/a", parameters: str = "{type: object}"
) -> ConfigError:
    return error(WEBHOOK.format(name=name, url=url, parameters=parameters))


def test_webhook_tool_name_clashing_with_a_builtin() -> None:
    exc = webhook_error(name="transfer")
    assert str(exc) == (
        "bridge.yaml:2 tools.transfer: tool name 'transfer' clashes with a built-in tool "
        "(send_dtmf, hangup, transfer, switch_agent, collect_digits)"
    )
    assert "bad name" not in str(webhook_error(name="hangup"))
    assert "letters, digits" in str(webhook_error(name="'look up'"))


@pytest.mark.parametrize("url", ["ftp://x.example/a", "x.example/a", "http://", "''"])
def test_webhook_url_must_be_http(url: str) -> None:
    exc = webhook_error(url=url)
    assert exc.key == "tools.lookup.url" and exc.line == 3
    assert "expected an http:// or https:// URL" in str(exc)


@pytest.mark.parametrize(
    "parameters", ["{type: array}", "{properties: {}}", "{type: object, properties: [a]}"]
)
def test_webhook_parameters_must_be_an_object_schema(parameters: str) -> None:
    exc = webhook_error(parameters=parameters)
    assert exc.key == "tools.lookup.parameters" and exc.line == 4
    assert "expected an object schema" in str(exc)


def test_webhook_bad_method_and_header() -> None:
    exc = error("tools:\n  a:\n    url: http://x/\n    method: PUT\n")
    assert exc.key == "tools.a.method" and "'POST', 'GET'" in str(exc)
    exc = error("tools:\n  a:\n    url: http://x/\n    headers_env: {'Bad Header': X}\n")
    assert exc.key == "tools.a.headers_env.Bad Header"


def test_agent_tool_names_a_webhook() -> None:
    text = WEBHOOK.format(name="lookup", url="http://x/", parameters="{type: object}")
    cfg = load_text(text + "agents:\n  default:\n    tools: [lookup]\n", FILE)
    assert cfg.agents["default"].tools == ("lookup",)


# ---------------------------------------------------------------------------- environment


def test_env_overrides_addresses_and_names_the_variable() -> None:
    env = {
        "AGI_BRIDGE_LISTEN_AUDIOSOCKET": "0.0.0.0:9999",
        "AGI_BRIDGE_AMI_HOST": "10.0.0.5",
        "AGI_BRIDGE_AMI_PORT": "5039",
        "AGI_BRIDGE_REALTIME_URL": "wss://proxy.example/v1/realtime",
        "AGI_BRIDGE_UNRELATED": "x",
    }
    cfg = load_text("ami: {host: asterisk}\n", FILE, env=env)
    assert cfg.listen.audiosocket == "0.0.0.0:9999"
    assert (cfg.ami.host, cfg.ami.port) == ("10.0.0.5", 5039)
    assert cfg.realtime.url == "wss://proxy.example/v1/realtime"
    with pytest.raises(ConfigError) as info:
        load_text("", FILE, env={"AGI_BRIDGE_AMI_PORT": "many"})
    assert str(info.value) == "environment AGI_BRIDGE_AMI_PORT: expected an integer, got 'many'"
    with pytest.raises(ConfigError) as info:
        load_text("", FILE, env={"AGI_BRIDGE_LISTEN_FASTAGI": "nowhere"})
    assert info.value.key == "AGI_BRIDGE_LISTEN_FASTAGI" and "HOST:PORT" in str(info.value)


def test_env_override_names() -> None:
    assert "AGI_BRIDGE_AMI_SECRET_FILE" in env_overrides("ami")
    assert env_overrides("listen")["AGI_BRIDGE_LISTEN_FASTAGI"] == "fastagi"


def test_load_applies_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "b.yaml"
    path.write_text("ami: {port: 1}\n")
    monkeypatch.setenv("AGI_BRIDGE_AMI_PORT", "6000")
    assert load(path).ami.port == 6000
    assert load(None).ami.port == 6000


# ---------------------------------------------------------------------------- admin auth


def test_admin_needs_a_token_off_loopback() -> None:
    cfg = load_text('listen: {http: "0.0.0.0:8088"}\n', FILE)
    with pytest.raises(ConfigError, match="needs a token: set AGI_BRIDGE_ADMIN_TOKEN"):
        check_admin_auth(cfg, env={})
    check_admin_auth(cfg, env={"AGI_BRIDGE_ADMIN_TOKEN": "t"})
    check_admin_auth(load_text('listen: {http: "127.0.0.1:8088"}\n', FILE), env={})
    check_admin_auth(load_text('listen: {http: ""}\n', FILE), env={})
    off = load_text('listen: {http: "0.0.0.0:8088"}\nadmin: {enabled: false}\n', FILE)
    check_admin_auth(off, env={})
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("10.0.0.1")


# ---------------------------------------------------------------------------- tool schemas


def test_toolset_for_agent_schemas() -> None:
    cfg = load_text(GOOD, FILE)
    tools = {t["name"]: t for t in ToolSet.for_agent(cfg, "reception").schemas()}
    assert list(tools) == ["hangup", "lookup_order", "transfer", "switch_agent"]
    transfer = tools["transfer"]["parameters"]
    assert transfer["properties"]["destination"]["enum"] == ["sales", "operator"]
    assert transfer["required"] == ["destination"]
    assert "sales: Sales team" in tools["transfer"]["description"]
    switch = tools["switch_agent"]
    assert switch["parameters"]["properties"]["name"]["enum"] == ["billing"]
    assert "billing: Invoices and payments" in switch["description"]
    json.dumps(tools)  # plain JSON, no read-only mappings left
    billing = [t["name"] for t in ToolSet.for_agent(cfg, "billing").schemas()]
    assert billing == ["hangup"]


class Controls:
    call_id = "c1"

    def __init__(self) -> None:
        self.transfers: list[tuple[str, TransferTarget, str]] = []

    async def play_dtmf(self, digit: str) -> None: ...

    async def dtmf_pause(self) -> None: ...

    async def end_call(self, reason: str) -> None: ...

    async def transfer(self, name: str, target: TransferTarget, summary: str) -> None:
        self.transfers.append((name, target, summary))

    async def switch_agent(self, name: str) -> None: ...

    def call_info(self) -> dict[str, str]:
        return {"call_id": "c1", "agent": "a", "caller_id": "", "dnid": "", "channel": ""}


def run(tools: ToolSet, name: str, args: dict[str, Any]) -> dict[str, Any]:
    controls = Controls()
    return asyncio.run(tools.run(controls, name, json.dumps(args)))


def test_transfer_tool_arguments() -> None:
    tools = ToolSet.for_agent(load_text(GOOD, FILE), "reception")
    assert run(tools, "transfer", {"destination": "sales", "summary": " quote "}) == {
        "ok": True,
        "destination": "sales",
    }
    result = run(tools, "transfer", {"destination": "mars"})
    assert result == {
        "ok": False,
        "error": "unknown destination 'mars': choose one of sales, operator",
    }
    assert run(tools, "transfer", {"destination": "sales", "summary": 5})["ok"] is False
    assert run(tools, "switch_agent", {"name": "reception"})["error"].startswith("unknown agent")


def test_webhook_unreachable_is_an_error_result() -> None:
    cfg = load_text("tools:\n  t:\n    url: http://127.0.0.1:9/x\n    timeout_s: 2\n", FILE)
    result = asyncio.run(call_webhook("t", cfg.tools["t"], {}, {"call_id": "c"}))
    assert result == {
        "ok": False,
        "error": "the service could not be reached (ClientConnectorError)",
    }
