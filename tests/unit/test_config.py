"""Config loading: defaults, validation, and error messages that name file, line and key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from agi_bridge import config
from agi_bridge.config import Agent, Config, load_text
from agi_bridge.errors import BridgeError, ConfigError
from agi_bridge.protocol.realtime import VOICES

FILE = "bridge.yaml"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agi-bridge.yaml"


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(text, FILE)
    return info.value


def test_empty_text_gives_defaults() -> None:
    for text in ("", "\n", "# only a comment\n", "---\n"):
        cfg = load_text(text, FILE)
        assert cfg == dataclasses.replace(Config(), source=FILE)
    cfg = load_text("", FILE)
    assert cfg.source == FILE
    assert cfg.listen.audiosocket == "127.0.0.1:9092"
    assert cfg.default_agent == "default"
    name, agent = cfg.agent(None)
    assert name == "default"
    assert agent == Agent()
    assert agent.tools == ("send_dtmf", "hangup")


def test_empty_sections_give_their_defaults() -> None:
    cfg = load_text("listen:\nami:\nagents:\n  default:\n", FILE)
    assert cfg.listen == config.Listen()
    assert cfg.ami == config.Ami()
    assert cfg.agents["default"] == Agent()


def test_values_are_loaded_and_typed() -> None:
    cfg = load_text(
        """\
listen:
  audiosocket: 0.0.0.0:9000
  fastagi: "[::1]:4573"
ami:
  enabled: false
  port: 5039
  action_timeout_s: 3
realtime:
  provider: simulator
default_agent: sales
agents:
  sales:
    voice: cedar
    speed: 1.1
    max_output_tokens: 4096
    tools: [hangup]
    turn_detection:
      type: server_vad
      threshold: 1
      idle_timeout_ms: null
  support:
    max_output_tokens: inf
    turn_detection:
      type: none
limits:
  playout_buffer_ms: 60000
""",
        FILE,
    )
    assert cfg.listen.audiosocket == "0.0.0.0:9000"
    assert config.split_hostport(cfg.listen.fastagi) == ("::1", 4573)
    assert cfg.ami.enabled is False
    assert cfg.ami.port == 5039
    assert cfg.ami.action_timeout_s == 3.0
    assert isinstance(cfg.ami.action_timeout_s, float)
    assert cfg.realtime.provider == "simulator"
    sales = cfg.agents["sales"]
    assert sales.voice == "cedar"
    assert sales.max_output_tokens == 4096
    assert sales.tools == ("hangup",)
    assert sales.turn_detection.type == "server_vad"
    assert sales.turn_detection.threshold == 1.0
    assert isinstance(sales.turn_detection.threshold, float)
    assert sales.turn_detection.idle_timeout_ms is None
    assert cfg.agents["support"].max_output_tokens == "inf"
    assert cfg.agents["support"].turn_detection.type == "none"
    assert cfg.limits.playout_buffer_ms == 60000
    assert cfg.agent("support")[0] == "support"
    assert cfg.agent("nobody")[0] == "sales"  # unknown agent name: the default one
    assert cfg.agent("")[0] == "sales"


def test_config_is_frozen() -> None:
    cfg = load_text("", FILE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.default_agent = "x"  # type: ignore[misc]
    cfg = load_text("agents:\n  default: {}\n", FILE)
    with pytest.raises(TypeError):
        cfg.agents["x"] = Agent()  # type: ignore[index]


def test_example_config_loads() -> None:
    cfg = load_text(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE))
    assert cfg.default_agent in cfg.agents
    assert cfg.source == str(EXAMPLE)


# ------------------------------------------------------------------------------- errors


def test_unknown_key_names_file_line_and_path() -> None:
    exc = error("listen:\n  audiosocket: 127.0.0.1:9092\n  bogus: 1\n")
    assert str(exc).startswith("bridge.yaml:3 listen.bogus: unknown key")
    assert "expected one of audiosocket, " in str(exc) and "fastagi" in str(exc)
    assert (exc.file, exc.line, exc.key) == (FILE, 3, "listen.bogus")
    assert isinstance(exc, BridgeError)


def test_unknown_top_level_key() -> None:
    exc = error("# header\n\nlisten: {}\nvoice: marin\n")
    assert str(exc).startswith("bridge.yaml:4 voice: unknown key, expected one of ")


def test_unknown_key_deep_in_an_agent() -> None:
    text = "agents:\n  default:\n    turn_detection:\n      type: server_vad\n      vad: 1\n"
    exc = error(text)
    assert str(exc).startswith("bridge.yaml:5 agents.default.turn_detection.vad: unknown key")


def test_unknown_voice_is_a_warning_with_its_line() -> None:
    text = """\
default_agent: sales
agents:
  sales:
    instructions: hello
    voice: bob
"""
    cfg = load_text(text, FILE)
    assert cfg.agents["sales"].voice == "bob"
    assert cfg.warnings == (
        f"bridge.yaml:5 agents.sales.voice: voice 'bob' is not one of {', '.join(VOICES)}",
    )
    assert load_text("agents:\n  default:\n    voice: marin\n", FILE).warnings == ()


def test_implausible_voice_name_is_an_error() -> None:
    exc = error("agents:\n  default:\n    voice: 'Marin Voice!'\n")
    assert str(exc).startswith("bridge.yaml:3 agents.default.voice: not a voice name")
    assert exc.line == 3


def test_reasoning_parallel_truncation_keys() -> None:
    cfg = load_text(
        "agents:\n  default:\n    reasoning_effort: high\n    parallel_tool_calls: false\n"
        "    truncation_retention_ratio: 0.5\n",
        FILE,
    )
    agent = cfg.agents["default"]
    assert (agent.reasoning_effort, agent.parallel_tool_calls) == ("high", False)
    assert agent.truncation_retention_ratio == 0.5
    exc = error("agents:\n  default:\n    reasoning_effort: extreme\n")
    assert str(exc) == (
        "bridge.yaml:3 agents.default.reasoning_effort: "
        "expected one of minimal, low, medium, high, xhigh or ''"
    )
    exc = error("agents:\n  default:\n    truncation: sometimes\n")
    assert str(exc).startswith("bridge.yaml:3 agents.default.truncation: expected one of auto")
    exc = error("agents:\n  default:\n    truncation_retention_ratio: 1.5\n")
    assert str(exc) == (
        "bridge.yaml:3 agents.default.truncation_retention_ratio: expected a fraction 0..1, got 1.5"
    )
    exc = error("agents:\n  default:\n    parallel_tool_calls: maybe\n")
    assert exc.line == 3 and "parallel_tool_calls" in str(exc)
    exc = error("agents:\n  default:\n    truncation: auto\n    truncation_retention_ratio: 0.5\n")
    assert str(exc) == (
        "bridge.yaml:4 agents.default.truncation_retention_ratio: "
        "set truncation or truncation_retention_ratio, not both"
    )


def test_wrong_type_scalar() -> None:
    exc = error("ami:\n  host: 127.0.0.1\n  port: '5038'\n")
    assert str(exc) == "bridge.yaml:3 ami.port: expected an integer, got '5038'"


def test_wrong_type_bool_is_not_an_int() -> None:
    exc = error("limits:\n  max_calls: true\n")
    assert str(exc).startswith("bridge.yaml:2 limits.max_calls: expected an integer")


def test_wrong_type_mapping_where_a_scalar_belongs() -> None:
    exc = error("ami:\n  host:\n    name: x\n")
    assert str(exc).startswith("bridge.yaml:3 ami.host: expected a string, got a mapping")


def test_wrong_type_scalar_where_a_section_belongs() -> None:
    exc = error("ami: yes\n")
    assert str(exc).startswith("bridge.yaml:1 ami: expected a mapping")


def test_wrong_type_in_a_list() -> None:
    exc = error("agents:\n  default:\n    tools:\n      - hangup\n      - 5\n")
    assert str(exc) == "bridge.yaml:5 agents.default.tools[1]: expected a string, got 5"


def test_tools_must_be_a_list() -> None:
    exc = error("agents:\n  default:\n    tools: hangup\n")
    assert str(exc) == "bridge.yaml:3 agents.default.tools: expected a list"


def test_top_level_must_be_a_mapping() -> None:
    exc = error("- a\n- b\n")
    assert str(exc).startswith("bridge.yaml:1 (top level): expected a mapping")


def test_bad_literal() -> None:
    exc = error("realtime:\n  provider: anthropic\n")
    assert str(exc) == (
        "bridge.yaml:2 realtime.provider: got 'anthropic', expected one of "
        "'openai', 'azure', 'url', 'simulator'"
    )


@pytest.mark.parametrize(
    "value", ["localhost", "127.0.0.1", ":9092", "host:", "host:port", "host:99999", "h:-1"]
)
def test_bad_listen_address(value: str) -> None:
    exc = error(f"listen:\n  audiosocket: 127.0.0.1:9092\n  fastagi: '{value}'\n")
    assert str(exc) == f"bridge.yaml:3 listen.fastagi: expected HOST:PORT, got {value!r}"


def test_split_hostport() -> None:
    assert config.split_hostport("127.0.0.1:9092") == ("127.0.0.1", 9092)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        config.split_hostport("nope")


@pytest.mark.parametrize(
    ("section", "key", "shown"),
    [
        ("dtmf", "gap_ms", "-5"),
        ("limits", "max_call_s", "-5.0"),
        ("limits", "max_calls", "-5"),
        ("ami", "port", "-5"),
        ("ami", "action_timeout_s", "-5.0"),
    ],
)
def test_negative_values(section: str, key: str, shown: str) -> None:
    exc = error(f"{section}:\n\n  {key}: -5\n")
    assert str(exc) == f"bridge.yaml:3 {section}.{key}: must not be negative, got {shown}"


def test_negative_ms_in_an_agent() -> None:
    text = "agents:\n  default:\n    turn_detection:\n      silence_duration_ms: -1\n"
    exc = error(text)
    assert str(exc) == (
        "bridge.yaml:4 agents.default.turn_detection.silence_duration_ms: "
        "must not be negative, got -1"
    )


def test_zero_is_not_negative() -> None:
    cfg = load_text("dtmf:\n  gap_ms: 0\n", FILE)
    assert cfg.dtmf.gap_ms == 0


@pytest.mark.parametrize("value", ["0", "-3", "4097", "100000"])
def test_max_output_tokens_out_of_range(value: str) -> None:
    exc = error(f"agents:\n  default:\n    max_output_tokens: {value}\n")
    assert str(exc) == ("bridge.yaml:3 agents.default.max_output_tokens: expected 1..4096 or 'inf'")


@pytest.mark.parametrize("value", ["1", "4096", "inf"])
def test_max_output_tokens_in_range(value: str) -> None:
    cfg = load_text(f"agents:\n  default:\n    max_output_tokens: {value}\n", FILE)
    expected = "inf" if value == "inf" else int(value)
    assert cfg.agents["default"].max_output_tokens == expected


def test_max_output_tokens_not_a_number() -> None:
    exc = error("agents:\n  default:\n    max_output_tokens: lots\n")
    assert exc.line == 3
    assert exc.key == "agents.default.max_output_tokens"
    assert "'lots'" in str(exc)


def test_unknown_tool() -> None:
    exc = error("agents:\n  default:\n    voice: ash\n    tools: [send_dtmf, fax]\n")
    assert str(exc) == (
        "bridge.yaml:4 agents.default.tools[1]: unknown tool 'fax', "
        "expected send_dtmf, hangup, transfer, switch_agent, collect_digits"
    )


def test_bad_eagerness_and_noise_reduction() -> None:
    exc = error("agents:\n  a:\n    turn_detection:\n      eagerness: max\ndefault_agent: a\n")
    assert exc.line == 4
    assert exc.key == "agents.a.turn_detection.eagerness"
    exc = error("agents:\n  default:\n    noise_reduction: loud\n")
    assert exc.line == 3
    assert "near_field" in str(exc)
    assert load_text("agents:\n  default:\n    noise_reduction: ''\n", FILE)


def test_key_given_twice() -> None:
    exc = error("ami:\n  port: 1\n  port: 2\n")
    assert str(exc) == "bridge.yaml:3 ami.port: key given twice"


def test_default_agent_missing() -> None:
    exc = error("agents:\n  sales: {}\n  support: {}\n")
    assert exc.key == "default_agent"
    assert str(exc).startswith("bridge.yaml default_agent: no agent named 'default'")
    assert "sales, support" in str(exc)


def test_default_agent_names_an_unknown_agent() -> None:
    exc = error("default_agent: billing\n")
    assert "no agent named 'billing'" in str(exc)
    assert "(agents: default)" in str(exc)


def test_no_agents_at_all() -> None:
    exc = error("agents: {}\n")
    assert "(agents: none)" in str(exc)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("listen:\n  audiosocket: [1, 2\nami:\n  port: 1\n", 3),
        ("ami:\n  port: 1\n host: x\n", 3),
        ("ami:\n\tport: 1\n", 2),
        ('realtime:\n  model: "gpt\n', 3),
        ("a: 1\n---\nb: 2\n", 2),
    ],
)
def test_invalid_yaml_names_the_line(text: str, line: int) -> None:
    exc = error(text)
    assert exc.line == line
    assert str(exc).startswith(f"bridge.yaml:{line}: not valid YAML: ")
    assert exc.__cause__ is not None


def test_default_file_name_in_messages() -> None:
    with pytest.raises(ConfigError, match=r"^<string>:1 nope: unknown key"):
        load_text("nope: 1\n")


def test_load_none_and_missing_file(tmp_path: Path) -> None:
    assert config.load(None) == Config()
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="cannot read") as info:
        config.load(missing)
    assert info.value.file == str(missing)
    good = tmp_path / "ok.yaml"
    good.write_text("ami:\n  port: 6000\n", encoding="utf-8")
    assert config.load(good).ami.port == 6000
    assert config.load(good).source == str(good)
    bad = tmp_path / "bad.yaml"
    bad.write_text("ami:\n  port: x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="^" + re.escape(f"{bad}:2 ami.port: ")):
        config.load(bad)


def test_agent_in_config_is_an_agent_dataclass() -> None:
    cfg = load_text("agents:\n  default:\n    greeting: ''\n", FILE)
    assert isinstance(cfg.agents["default"], Agent)
    assert cfg.agents["default"].greeting == ""
