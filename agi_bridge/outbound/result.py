"""What an outbound call is and what came of it: outcomes, exit codes, the goal prompt,
the call's own config, and :class:`CallResult`."""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agi_bridge.config import Config
from agi_bridge.errors import ConfigError
from agi_bridge.prompt_context import substitute

GOAL_ACHIEVED = "goal achieved"  # a hangup reason starting with this: exit code 0
GOAL_NOT_ACHIEVED = "goal not achieved"

# outcome -> exit code (2 is a usage or configuration error: argparse, the config file)
EXIT_CODES: dict[str, int] = {
    "goal_achieved": 0,
    "goal_not_achieved": 1,
    "remote_hangup": 3,
    "no_answer": 4,
    "busy": 5,
    "congestion": 6,
    "failed": 7,
    "timeout": 8,
    "machine": 9,  # an answering machine answered and the AMD policy is hangup
    "voicemail_left": 12,  # --amd message: a machine answered and the agent left a message
    "stuck": 10,  # agi-bridge test: the same prompt again and again
    "dead_air": 11,  # agi-bridge test: no callee speech for dead_air_s
    "interrupted": 130,
}
EXIT_USAGE = 2

OUTCOME_TEXT = {
    "goal_achieved": "goal achieved",
    "goal_not_achieved": "goal not achieved",
    "remote_hangup": "the far end hung up",
    "no_answer": "no answer",
    "busy": "busy",
    "congestion": "congestion",
    "failed": "failed",
    "timeout": "timeout",
    "machine": "an answering machine answered",
    "voicemail_left": "voicemail message left",
    "stuck": "stuck in the menu",
    "dead_air": "dead air",
    "interrupted": "interrupted",
}

# OriginateResponse "Reason": the last control frame Asterisk saw (AST_CONTROL_*).
# Verified on 22.10.1: Busy() -> 5, Congestion() -> 8, ringing past the Originate
# Timeout -> 3, unregistered PJSIP endpoint / no such extension / unknown tech -> 0.
ORIGINATE_REASONS: dict[int, tuple[str, str]] = {
    0: (
        "failed",
        "Asterisk could not place the call (unknown or unregistered endpoint, no such "
        "extension, or unknown channel technology)",
    ),
    1: ("failed", "the far end hung up before answering"),
    3: ("no_answer", "no answer before the ring timeout"),
    5: ("busy", "the destination is busy"),
    8: ("congestion", "the destination or the network could not take the call"),
}

GOAL_INSTRUCTIONS = """\
# This call
You placed this phone call: you are the caller. Whoever answers speaks first, a person or
a recorded phone menu; listen first and do not talk over a recording.
Your goal: {goal}
- Use send_dtmf for menu choices and for numbers a menu asks you to type. Speak only to a
  person, or when a menu asks you to say something.
- When the goal is achieved, say a short goodbye if a person is on the line, then call
  hangup with a reason that starts with "goal achieved:" followed by the result, e.g.
  "goal achieved: the balance is 12 dollars".
- If the goal cannot be achieved (no such option, information you do not have, a dead
  end, repeated errors), call hangup with a reason that starts with "goal not achieved:"
  and why.
"""

CALL_TOOLS = ("send_dtmf", "hangup")
AMD_POLICIES = ("hangup", "message", "talk")  # --amd: what to do when a machine answers
VOICEMAIL_SUFFIX = "-voicemail"  # the agent that leaves the message (--amd message)

VOICEMAIL_INSTRUCTIONS = """\
# This call
You placed this phone call and reached an answering machine. Its greeting and beep are
over: it is recording now. Leave this message, once, clearly and briefly, then call
hangup with the reason "voicemail left". Do not wait for an answer.
The message: {message}
"""
AMI_CONNECT_TIMEOUT_S = 10.0
END_GRACE_S = 10.0  # after our hangup, or the channel's: how long the call may take to end
HANGUP_EVENT_WAIT_S = 1.0  # after a failed originate: wait this long for Hangup causes

Printer = Callable[[str], None]
# (kind, data, t): every call event, plus "answered" and "wire_dtmf" (agi-bridge test)
Watcher = Callable[[str, dict[str, Any], float], None]


def dial_string(destination: str, dial_context: str) -> str:
    """The Originate channel for a destination: a channel as given (``PJSIP/6002``,
    ``Local/500@ctx``), ``NUMBER@ctx`` as ``Local/NUMBER@ctx``, a plain number as
    ``Local/NUMBER@dial_context``."""
    dest = destination.strip()
    if not dest or any(c.isspace() for c in dest):
        raise ConfigError(f"invalid destination {destination!r}")
    if "/" in dest:
        return dest
    if "@" in dest:
        return f"Local/{dest}"
    return f"Local/{dest}@{dial_context}"


def goal_config(
    config: Config,
    agent: str,
    goal: str,
    greeting: str = "",
    context: Mapping[str, str] | None = None,
) -> Config:
    """The config of the call's own bridge: the agent with the goal, ephemeral listeners."""
    if agent not in config.agents:
        known = ", ".join(config.agents) or "none"
        raise ConfigError(f"no agent named {agent!r} (agents: {known})", key="--agent")
    if not goal.strip():
        raise ConfigError("the goal must not be empty", key="--goal")
    base = config.agents[agent]
    tools = tuple(base.tools) + tuple(t for t in CALL_TOOLS if t not in base.tools)
    # {caller_id}, {dnid}, --var values: replaced where known, other braces left as written
    values = context or {}
    instructions = substitute(base.instructions.strip(), values)
    instructions = f"{instructions}\n\n{GOAL_INSTRUCTIONS.format(goal=goal.strip())}"
    greeting = substitute(greeting, values)
    agents = dict(config.agents)
    agents[agent] = dataclasses.replace(
        base, instructions=instructions, greeting=greeting, ivr_guidance=True, tools=tools
    )

    def ephemeral(hostport: str) -> str:
        host = hostport.rpartition(":")[0] or "127.0.0.1"
        return f"{host}:0"

    listen = dataclasses.replace(
        config.listen,
        fastagi=ephemeral(config.listen.fastagi),
        audiosocket=ephemeral(config.listen.audiosocket),
        http="",  # no /metrics or /admin: a running `agi-bridge serve` may hold the port
    )
    return dataclasses.replace(config, listen=listen, agents=types.MappingProxyType(agents))


def voicemail_config(config: Config, agent: str, message: str) -> tuple[Config, str]:
    """``config`` with one more agent, ``<agent>-voicemail``, that leaves ``message`` on an
    answering machine (speaks first, hangup only); returns the config and its name."""
    base = config.agents[agent]
    name = agent + VOICEMAIL_SUFFIX
    agents = dict(config.agents)
    agents[name] = dataclasses.replace(
        base,
        instructions=f"{base.instructions.strip()}\n\n"
        + VOICEMAIL_INSTRUCTIONS.format(message=message.strip()),
        greeting="Leave the message now.",
        ivr_guidance=False,
        tools=("hangup",),
    )
    return dataclasses.replace(config, agents=types.MappingProxyType(agents)), name


def bridge_host(config: Config) -> str:
    """The address Asterisk reaches this process at (AGI_BRIDGE_HOST)."""
    if config.outbound.bridge_host:
        return config.outbound.bridge_host
    host = config.listen.fastagi.rpartition(":")[0].strip("[]")
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


@dataclass
class CallResult:
    """What happened on the call (``to_json()`` is what ``--json`` prints)."""

    outcome: str
    detail: str
    destination: str
    dial: str
    agent: str
    goal: str
    channel_id: str
    channel: str = ""
    call_id: str = ""
    answered: bool = False
    answered_after_s: float | None = None
    duration_s: float = 0.0
    end_reason: str = ""  # how the agent's call ended (call.py EndReason), "" if never joined
    originate_reason: int | None = None
    hangup_cause: int | None = None
    hangup_cause_text: str = ""
    digits: list[dict[str, Any]] = field(default_factory=list)  # {"digit", "t"}
    # what Asterisk reports on the wire (AMI DTMFEnd): {"digit", "t", "duration_ms", ...}
    wire_digits: list[dict[str, Any]] = field(default_factory=list)
    amd: dict[str, str] = field(default_factory=dict)  # {"status", "cause"} when AMD ran
    transcript: list[dict[str, Any]] = field(default_factory=list)  # {"t", "who", "text"|...}
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)  # response.done usage, summed
    tokens: dict[str, int] = field(default_factory=dict)  # by price kind
    cost_usd: float | None = None
    record_dir: str | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.outcome, EXIT_CODES["failed"])

    @property
    def digits_sent(self) -> str:
        return "".join(d["digit"] for d in self.digits)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["exit_code"] = self.exit_code
        out["digits_sent"] = self.digits_sent
        return out


def _seconds(value: float) -> float:
    return round(value, 2)


def _end_text(data: dict[str, Any]) -> str:
    reason = str(data.get("reason", ""))
    detail = str(data.get("detail", ""))
    text = {
        "agent_hangup": "the agent hung up",
        "caller_hangup": "the far end hung up",
        "operator_hangup": "hung up by agi-bridge call",
    }.get(reason, reason)
    return f"{text} ({detail})" if detail and reason != "caller_hangup" else text


def _arguments(raw: Any) -> dict[str, Any]:
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {"raw": str(raw)[:200]}
    return value if isinstance(value, dict) else {"value": value}


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None
