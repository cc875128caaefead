"""`agi-bridge call` without Asterisk: dial strings, the goal agent, outcomes, output.

The calls themselves (Originate, the demo IVR, busy/congestion/no answer) are tested
against a real Asterisk in tests/e2e/test_outbound_ivr.py.
"""

from __future__ import annotations

import types
from typing import Any

import pytest

from agi_bridge import cli
from agi_bridge.config import load_text
from agi_bridge.errors import ConfigError
from agi_bridge.outbound import (
    EXIT_CODES,
    GOAL_INSTRUCTIONS,
    OutboundCall,
    bridge_host,
    dial_string,
    format_result,
    goal_config,
    read_csv,
)

CONFIG = """
default_agent: ivr
agents:
  ivr:
    instructions: You call phone menus.
    greeting: Say hello.
    tools: [hangup]
    ivr_guidance: false
"""


def make_call(**kwargs: Any) -> OutboundCall:
    cfg = load_text(CONFIG, "call.yaml")
    return OutboundCall(cfg, "500", agent="ivr", goal="Enter 12345.", **kwargs)


@pytest.mark.parametrize(
    ("destination", "dial"),
    [
        ("PJSIP/6002", "PJSIP/6002"),
        ("PJSIP/5551234@trunk", "PJSIP/5551234@trunk"),
        ("Local/500@agi-bridge-ivr-demo", "Local/500@agi-bridge-ivr-demo"),
        ("5551234", "Local/5551234@agi-bridge-outbound"),
        ("+15551234", "Local/+15551234@agi-bridge-outbound"),
        ("500@agi-bridge-ivr-demo", "Local/500@agi-bridge-ivr-demo"),
    ],
)
def test_dial_string(destination: str, dial: str) -> None:
    assert dial_string(destination, "agi-bridge-outbound") == dial


@pytest.mark.parametrize("bad", ["", "  ", "PJSIP/60 02", "500\nAction: Hangup"])
def test_dial_string_refuses_what_is_not_a_destination(bad: str) -> None:
    with pytest.raises(ConfigError):
        dial_string(bad, "ctx")


def test_plain_numbers_use_the_configured_dial_context() -> None:
    cfg = load_text(CONFIG + "outbound: {dial_context: from-trunk}\n", "call.yaml")
    call = OutboundCall(cfg, "5551234", agent="ivr", goal="g")
    assert call.dial == "Local/5551234@from-trunk"


def test_goal_agent_gets_goal_tools_guidance_and_no_greeting() -> None:
    cfg = load_text(CONFIG + "listen: {fastagi: '0.0.0.0:4573', http: '127.0.0.1:8088'}\n", "c")
    out = goal_config(cfg, "ivr", "  Enter 12345.  ")
    agent = out.agents["ivr"]
    assert agent.instructions.startswith("You call phone menus.")
    assert "Your goal: Enter 12345." in agent.instructions
    assert '"goal achieved:"' in agent.instructions
    assert agent.greeting == ""
    assert agent.ivr_guidance is True
    assert agent.tools == ("hangup", "send_dtmf")
    # ephemeral listeners, no HTTP (a running `agi-bridge serve` may hold those ports)
    assert out.listen.fastagi == "0.0.0.0:0"
    assert out.listen.audiosocket == "127.0.0.1:0"
    assert out.listen.http == ""
    assert cfg.agents["ivr"].greeting == "Say hello."  # the loaded config is untouched
    assert bridge_host(out) == "127.0.0.1"  # a wildcard listener is reached on loopback
    assert "{goal}" in GOAL_INSTRUCTIONS


def test_unknown_agent_and_empty_goal_are_usage_errors() -> None:
    cfg = load_text(CONFIG, "c")
    with pytest.raises(ConfigError, match="no agent named 'nobody'"):
        goal_config(cfg, "nobody", "g")
    with pytest.raises(ConfigError, match="goal"):
        goal_config(cfg, "ivr", " ")
    no_ami = load_text(CONFIG + "ami: {enabled: false}\n", "c")
    with pytest.raises(ConfigError, match="AMI"):
        OutboundCall(no_ami, "500", agent="ivr", goal="g")
    with pytest.raises(ConfigError):
        OutboundCall(cfg, "500", agent="ivr", goal="g", timeout_s=0)


def test_outbound_section_defaults_and_bridge_host() -> None:
    cfg = load_text("", "c")
    assert cfg.outbound.dial_context == "agi-bridge-outbound"
    assert cfg.outbound.agent_context == "agi-bridge-agent"
    assert (cfg.outbound.ring_timeout_s, cfg.outbound.timeout_s) == (30.0, 300.0)
    assert bridge_host(cfg) == "127.0.0.1"
    cfg = load_text("outbound: {bridge_host: 10.0.0.7}\n", "c")
    assert bridge_host(cfg) == "10.0.0.7"
    with pytest.raises(ConfigError, match=r"outbound\.ring_timeout_s"):
        load_text("outbound: {ring_timeout_s: -1}\n", "c")


@pytest.mark.parametrize(
    ("end", "outcome"),
    [
        ({"reason": "agent_hangup", "detail": "goal achieved: balance 12"}, "goal_achieved"),
        ({"reason": "agent_hangup", "detail": "Goal achieved"}, "goal_achieved"),
        ({"reason": "agent_hangup", "detail": "goal not achieved: no option"}, "goal_not_achieved"),
        ({"reason": "agent_hangup", "detail": "caller said goodbye"}, "goal_not_achieved"),
        ({"reason": "caller_hangup", "detail": "AudioSocket closed"}, "remote_hangup"),
        ({"reason": "realtime_failed", "detail": "HTTP 503"}, "failed"),
        ({"reason": "max_duration", "detail": "3600 s"}, "timeout"),
    ],
)
def test_outcome_of_the_agents_call(end: dict[str, str], outcome: str) -> None:
    call = make_call()
    call._end = end
    call._conclude()
    assert call.result.outcome == outcome
    assert call.result.exit_code == EXIT_CODES[outcome]
    assert call.result.end_reason == end["reason"]


def test_our_own_hangup_is_reported_as_timeout_or_interrupted() -> None:
    call = make_call()
    call._stop_reason = "timeout"
    call._end = {"reason": "operator_hangup", "detail": "timeout"}
    call._conclude()
    assert (call.result.outcome, call.result.exit_code) == ("timeout", 8)
    call = make_call()
    call.interrupt()
    call._conclude()  # hung up before the agent joined
    assert (call.result.outcome, call.result.exit_code) == ("interrupted", 130)


def test_answered_but_never_joined_is_a_failure() -> None:
    call = make_call()
    call._conclude()
    assert call.result.outcome == "failed"
    assert "never reached the agent" in call.result.detail


def test_exit_codes_are_distinct() -> None:
    assert EXIT_CODES["goal_achieved"] == 0
    codes = list(EXIT_CODES.values())
    assert len(set(codes)) == len(codes)
    assert 2 not in codes  # usage and configuration errors


def test_events_become_transcript_digits_and_tool_calls() -> None:
    lines: list[str] = []
    call = make_call(printer=lines.append)
    fake = types.SimpleNamespace(call_id="c-1", stats=types.SimpleNamespace(usage={"x": 1}))
    call._observe(fake, "start", {"agent": "ivr", "channel": "Local/500@x-1;1"})
    call._observe(fake, "caller_transcript", {"text": "Press 2 for messages."})
    call._observe(fake, "tool_call", {"name": "send_dtmf", "arguments": '{"digits": "2"}'})
    call._observe(fake, "dtmf_sent", {"digit": "2"})
    call._observe(fake, "tool_result", {"name": "send_dtmf", "result": {"ok": True}})
    call._observe(fake, "agent_transcript", {"text": "Goodbye."})
    call._observe(fake, "end", {"reason": "agent_hangup", "detail": "goal achieved: ok"})
    call._conclude()
    r = call.result
    assert r.outcome == "goal_achieved" and r.call_id == "c-1" and r.usage == {"x": 1}
    assert r.digits_sent == "2"
    assert [e.get("text") or e.get("dtmf") for e in r.transcript] == [
        "Press 2 for messages.",
        "2",
        "Goodbye.",
    ]
    assert r.tool_calls[0]["result"] == {"ok": True}
    text = "\n".join(lines)
    assert "callee: Press 2 for messages." in text
    assert "agent presses 2" in text
    assert "call ended: the agent hung up (goal achieved: ok)" in text
    data = r.to_json()
    assert data["exit_code"] == 0 and data["digits_sent"] == "2"
    summary = format_result(r, transcript=True)
    assert "Result: goal achieved (exit code 0)" in summary
    assert "digits      2 at " in summary
    assert "callee: Press 2 for messages." in summary


def test_format_groups_digits_typed_together() -> None:
    call = make_call()
    for digit, t in [("2", 12.6), ("1", 18.7), ("1", 23.3), ("2", 23.6), ("#", 23.9)]:
        call.result.digits.append({"digit": digit, "t": t})
    summary = format_result(call.result, transcript=False)
    assert "2 at 12.6 s, 1 at 18.7 s, 12# at 23.3-23.9 s" in summary


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["call", "--help"])
    out = capsys.readouterr().out
    for line in ("0  goal achieved", "4  no answer", "5  busy", "6  congestion", "8  timeout"):
        assert line in out


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    code = cli.main(["call", "500", "-c", str(path), "--agent", "nobody", "--goal", "g"])
    assert code == 2
    assert "no agent named 'nobody'" in capsys.readouterr().err


def test_read_csv(tmp_path: Any) -> None:
    path = tmp_path / "calls.csv"
    path.write_text(
        "destination,goal,agent\n"
        "# a comment line\n"
        "486,Reach sales.,\n"
        "\n"
        "Local/500@agi-bridge-ivr-demo,,ivr\n"
    )
    rows = read_csv(str(path))
    assert rows == [
        {"destination": "486", "goal": "Reach sales.", "agent": ""},
        {"destination": "Local/500@agi-bridge-ivr-demo", "goal": "", "agent": "ivr"},
    ]
    path.write_text("number,goal\n486,x\n")
    with pytest.raises(ConfigError, match="destination"):
        read_csv(str(path))
    path.write_text("destination,colour\n486,red\n")
    with pytest.raises(ConfigError, match="colour"):
        read_csv(str(path))


def test_cli_needs_a_goal_and_one_kind_of_destination(
    capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    assert cli.main(["call", "500", "-c", str(path), "--agent", "ivr"]) == 2
    assert "a goal is needed" in capsys.readouterr().err
    assert cli.main(["call", "-c", str(path), "--agent", "ivr", "--goal", "g"]) == 2
    assert "a destination is needed" in capsys.readouterr().err
    rows = tmp_path / "calls.csv"
    rows.write_text("destination,goal\n486,\n")
    args = ["call", "--csv", str(rows), "-c", str(path), "--agent", "ivr"]
    assert cli.main(args) == 2
    assert "row 1: a goal is needed" in capsys.readouterr().err
    assert cli.main([*args[:1], "500", *args[1:], "--goal", "g"]) == 2
    assert "not both" in capsys.readouterr().err


def test_ari_outbound_app_names_and_causes() -> None:
    from agi_bridge.config import load_text
    from agi_bridge.outbound.ari_dial import CAUSES, ari_app_name

    cfg = load_text("", "c.yaml")
    name = ari_app_name(cfg, "1a2b3c4d-5e6f-7a8b-9c0d-e1f2a3b4c5d6")
    assert name == "agi-bridge-call-1a2b3c4d5e6f"  # its own Stasis app, beside `serve`
    assert CAUSES[17][0] == "busy" and CAUSES[19][0] == "no_answer"
    assert CAUSES[34][0] == "congestion"
