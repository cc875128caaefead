"""``agi-bridge call``: one outbound call in which an agent works toward a goal.

    agi-bridge call DESTINATION --agent NAME --goal "..." [--json]

How a call is placed (verified on Asterisk 22.10.1, see tests/e2e/test_outbound_ivr.py):

* The command runs its own :class:`~agi_bridge.app.Bridge` on ephemeral FastAGI and
  AudioSocket ports, with its own AMI connection, so it works next to a running
  ``agi-bridge serve`` without clashing with it.
* It sends ``Originate`` (``Async``, a fresh ``ChannelId``) to the destination with
  ``Context=agi-bridge-agent Exten=<agent> Priority=1`` and the channel variables
  ``AGI_BRIDGE_HOST`` / ``AGI_BRIDGE_AGI_PORT`` / ``AGI_BRIDGE_AUDIOSOCKET_PORT``: the
  settings Gosub of the dialplan prefers channel variables, so once the callee answers
  the call takes the same FastAGI + AudioSocket path as an inbound call, to this process.
  Its FastAGI server accepts only the request whose ``agi_uniqueid`` is that ChannelId.
* The agent is the configured one with the goal added to its instructions, the IVR
  guidance on, ``send_dtmf`` and ``hangup`` enabled and no greeting (the callee speaks
  first). It is told to end with ``hangup(reason="goal achieved: ...")``.
* Destinations: a channel (``PJSIP/6002``, ``PJSIP/5551234@trunk``, ``Local/500@ctx``), or
  a plain number, dialed as ``Local/NUMBER@<outbound.dial_context>``. For a ``Local/``
  destination the agent runs on the ``;1`` half; ``PlayDTMF`` on it reaches the ``;2``
  half, where the far end's dialplan (``Background``/``WaitExten``/``Read``) reads it.
* Outcomes come from Asterisk: the ``OriginateResponse`` event (``Reason`` 3 no answer
  after the ring timeout, 5 busy, 8 congestion, 0 the channel could not be created:
  unknown or unregistered endpoint, no such extension), ``Hangup`` events (cause), and
  the call's end (the agent's hangup reason, the far end hanging up). Every wait is
  bounded by ``--timeout``; nothing hangs.

Exit codes (:data:`EXIT_CODES`): 0 goal achieved, 1 goal not achieved, 2 usage or
configuration error, 3 remote hung up, 4 no answer, 5 busy, 6 congestion, 7 failed,
8 timeout, 130 interrupted. ``--csv FILE --concurrency N`` places one call per row (each
with its own bridge), N at a time; exit code 0 when every goal was achieved, else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
import time
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agi_bridge.app import Bridge, ami_client
from agi_bridge.asterisk.ami import AmiClient, AmiMessage
from agi_bridge.config import Config
from agi_bridge.errors import AmiError, BridgeError, ConfigError
from agi_bridge.protocol.agi import AgiRequest
from agi_bridge.records import Ledger

log = logging.getLogger(__name__)

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
AMI_CONNECT_TIMEOUT_S = 10.0
END_GRACE_S = 10.0  # after our hangup, or the channel's: how long the call may take to end
HANGUP_EVENT_WAIT_S = 1.0  # after a failed originate: wait this long for Hangup causes

Printer = Callable[[str], None]


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


def goal_config(config: Config, agent: str, goal: str, greeting: str = "") -> Config:
    """The config of the call's own bridge: the agent with the goal, ephemeral listeners."""
    if agent not in config.agents:
        known = ", ".join(config.agents) or "none"
        raise ConfigError(f"no agent named {agent!r} (agents: {known})", key="--agent")
    if not goal.strip():
        raise ConfigError("the goal must not be empty", key="--goal")
    base = config.agents[agent]
    tools = tuple(base.tools) + tuple(t for t in CALL_TOOLS if t not in base.tools)
    instructions = f"{base.instructions.strip()}\n\n{GOAL_INSTRUCTIONS.format(goal=goal.strip())}"
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


class OutboundCall:
    """One outbound call: AMI connection, its own Bridge, Originate, outcome.

    ``printer`` receives the live transcript, one readable line at a time.
    """

    def __init__(
        self,
        config: Config,
        destination: str,
        *,
        agent: str,
        goal: str,
        timeout_s: float | None = None,
        ring_timeout_s: float | None = None,
        caller_id: str | None = None,
        greeting: str = "",
        printer: Printer | None = None,
        simulator_scenario: Any = None,
        channel_id: str | None = None,
    ) -> None:
        if not config.ami.enabled:
            raise ConfigError("outbound calls need AMI (ami.enabled: true)", key="ami.enabled")
        out = config.outbound
        self.timeout_s = out.timeout_s if timeout_s is None else timeout_s
        self.ring_timeout_s = out.ring_timeout_s if ring_timeout_s is None else ring_timeout_s
        if self.timeout_s <= 0 or self.ring_timeout_s <= 0:
            raise ConfigError("timeouts must be > 0", key="--timeout")
        self.config = config
        self.call_config = goal_config(config, agent, goal, greeting)
        self.destination = destination
        self.dial = dial_string(destination, out.dial_context)
        self.agent = agent
        self.goal = goal.strip()
        self.caller_id = out.caller_id if caller_id is None else caller_id
        self.channel_id = channel_id or str(uuid.uuid4())
        self._print = printer or (lambda line: None)
        self._scenario = simulator_scenario
        self._t0 = time.monotonic()
        self._changed = asyncio.Event()
        self._originate_events: list[AmiMessage] = []
        self._hangups: list[AmiMessage] = []
        self._call: Any = None  # agi_bridge.call.Call once the agent has joined
        self._end: dict[str, Any] | None = None
        self._stop_reason: str | None = None  # "timeout" | "interrupted", set by us
        agent_cfg = self.call_config.agents[agent]
        self._ledger = Ledger(config.prices, config.model_for(agent_cfg))
        self.result = CallResult(
            outcome="failed",
            detail="",
            destination=destination,
            dial=self.dial,
            agent=agent,
            goal=self.goal,
            channel_id=self.channel_id,
        )

    # ------------------------------------------------------------------ running

    def now(self) -> float:
        return time.monotonic() - self._t0

    def interrupt(self) -> None:
        """Ctrl-C: hang up and report ``interrupted`` (safe to call more than once)."""
        if self._stop_reason is None:
            self._stop_reason = "interrupted"
        self._changed.set()

    @property
    def interrupted(self) -> bool:
        return self._stop_reason == "interrupted"

    def skip(self, detail: str) -> CallResult:
        """The result of a call that was never placed (``--csv`` after Ctrl-C)."""
        self._t0 = time.monotonic()
        return self._finish("interrupted", detail)

    async def run(self) -> CallResult:
        """Place the call and follow it to its end. Never raises for call failures."""
        self._t0 = time.monotonic()
        ami = ami_client(self.config)
        removers = [
            ami.add_event_listener("OriginateResponse", self._on_ami_event),
            ami.add_event_listener("Hangup", self._on_ami_event),
        ]
        bridge: Bridge | None = None
        try:
            await ami.start()
            try:
                async with asyncio.timeout(AMI_CONNECT_TIMEOUT_S):
                    await ami.wait_connected()
            except TimeoutError:
                return self._finish(
                    "failed",
                    f"AMI {self.config.ami.host}:{self.config.ami.port}: "
                    f"{ami.last_error or 'not connected'}",
                )
            bridge = Bridge(
                self.call_config,
                ami=ami,
                observers=(self._observe,),
                simulator_scenario=self._scenario,
            )
            bridge.fastagi.accept = self._accept
            try:
                await bridge.start()
            except (OSError, BridgeError) as exc:
                return self._finish("failed", f"cannot start the call's bridge: {exc}")
            if bridge.simulator is not None:
                self._print(f"Realtime: the bundled SIMULATOR at {bridge.simulator.url}")
            await self._place(ami, bridge)
            return self.result
        finally:
            for remove in removers:
                remove()
            if bridge is not None:
                await bridge.close(grace=3.0)
                summary = bridge.monitoring.records.last_summary
                if summary and summary.get("record_dir"):
                    self.result.record_dir = str(summary["record_dir"])
            await ami.close()

    async def _place(self, ami: AmiClient, bridge: Bridge) -> None:
        variables = {
            "AGI_BRIDGE_HOST": bridge_host(self.config),
            "AGI_BRIDGE_AGI_PORT": str(bridge.fastagi.port),
            "AGI_BRIDGE_AUDIOSOCKET_PORT": str(bridge.audiosocket.port),
        }
        self._line(
            f"dialing {self.dial} (agent {self.agent}, rings up to {self.ring_timeout_s:g} s)"
        )
        try:
            response = await ami.originate(
                self.dial,
                exten=self.agent,
                context=self.config.outbound.agent_context,
                priority=1,
                timeout_ms=round(self.ring_timeout_s * 1000),
                caller_id=self.caller_id or None,
                variables=variables,
                channel_id=self.channel_id,
            )
        except AmiError as exc:
            self._finish("failed", f"Originate refused: {exc}")
            return
        action_id = response.action_id
        deadline = self._t0 + self.timeout_s

        # 1. ringing: until the OriginateResponse event
        def originate_response() -> AmiMessage | None:
            for ev in self._originate_events:
                if ev.action_id == action_id or ev.get("Uniqueid") == self.channel_id:
                    return ev
            return None

        ev = await self._wait(originate_response, deadline)
        if ev is None:  # our timeout or Ctrl-C while it rang
            await self._hangup_channel(ami)
            await self._wait(originate_response, time.monotonic() + END_GRACE_S, stop=False)
            self._finish(self._stop_reason or "timeout", self._stopped_detail())
            return
        reason = _int(ev.get("Reason"))
        self.result.originate_reason = reason
        if ev.get("Response").lower() != "success":
            # the Hangup events (if a channel was created at all) carry the cause
            await self._wait(self._take_cause, time.monotonic() + HANGUP_EVENT_WAIT_S, stop=False)
            outcome, text = ORIGINATE_REASONS.get(
                reason if reason is not None else -1,
                ("failed", f"the call failed (OriginateResponse Reason {reason})"),
            )
            if self.result.hangup_cause:
                text += f" (cause {self.result.hangup_cause} {self.result.hangup_cause_text})"
            self._finish(outcome, text)
            return
        self.result.answered = True
        self.result.answered_after_s = _seconds(self.now())
        self.result.channel = ev.get("Channel")
        self._line(f"answered ({self.result.channel})")

        # 2. the conversation: until the agent's call ends, or the channel hangs up unjoined
        def settled() -> bool:
            return self._end is not None or (self._call is None and self._channel_gone())

        await self._wait(settled, deadline)
        if not settled():  # our timeout or Ctrl-C
            if self._call is not None:
                with contextlib.suppress(BridgeError):  # it ended meanwhile
                    self._call.hangup(self._stop_reason or "timeout")
            else:
                await self._hangup_channel(ami)
            await self._wait(settled, time.monotonic() + END_GRACE_S, stop=False)
        if self._end is None and self._call is not None:
            # the channel is gone but the call still runs: AudioSocket closes shortly
            await self._wait(
                lambda: self._end is not None, time.monotonic() + END_GRACE_S, stop=False
            )
        await self._wait(self._channel_gone, time.monotonic() + 2.0, stop=False)
        self._take_cause()
        self._conclude()

    async def _wait(
        self, predicate: Callable[[], Any], deadline: float, *, stop: bool = True
    ) -> Any:
        """Wait until ``predicate()`` is truthy (returned), the deadline passes or, with
        ``stop``, an interrupt arrives (None)."""
        while True:
            value = predicate()
            if value:
                return value
            if stop and self._stop_reason is not None:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if stop and self._stop_reason is None:
                    self._stop_reason = "timeout"
                return None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    async def _hangup_channel(self, ami: AmiClient) -> None:
        """Hang up our channel by its uniqueid (AMI accepts it for Channel)."""
        try:
            await ami.hangup(self.channel_id)
        except AmiError as exc:
            log.info("hanging up %s: %s", self.channel_id, exc)

    def _stopped_detail(self) -> str:
        if self._stop_reason == "interrupted":
            return "interrupted (Ctrl-C)"
        return f"no result within --timeout {self.timeout_s:g} s"

    # ------------------------------------------------------------------ outcome

    def _conclude(self) -> None:
        end = self._end
        if end is None:
            if self._stop_reason is not None:
                self._finish(self._stop_reason, self._stopped_detail())
                return
            cause = self.result.hangup_cause
            self._finish(
                "failed",
                "answered, but the call never reached the agent (the dialplan could not "
                f"connect to this process at {bridge_host(self.config)}; hangup cause "
                f"{cause} {self.result.hangup_cause_text})",
            )
            return
        reason, detail = str(end.get("reason", "")), str(end.get("detail", ""))
        self.result.end_reason = reason
        if self._stop_reason is not None and reason in ("operator_hangup", "shutdown"):
            self._finish(self._stop_reason, self._stopped_detail())
        elif reason == "agent_hangup":
            achieved = detail.strip().lower().startswith(GOAL_ACHIEVED)
            self._finish("goal_achieved" if achieved else "goal_not_achieved", detail)
        elif reason == "caller_hangup":  # the Call's "caller" is the far end here
            self._finish("remote_hangup", "the far end hung up before the goal was reported")
        elif reason == "transferred":
            self._finish("goal_not_achieved", f"the agent transferred the call {detail}")
        elif reason == "max_duration":
            self._finish("timeout", f"limits.max_call_s reached ({detail})")
        else:
            self._finish("failed", f"{reason}: {detail}" if detail else reason)

    def _finish(self, outcome: str, detail: str) -> CallResult:
        r = self.result
        r.outcome, r.detail = outcome, detail
        self._line(f"=> {OUTCOME_TEXT.get(outcome, outcome)}: {detail}")
        r.duration_s = _seconds(self.now())
        r.tokens = dict(self._ledger.tokens)
        r.cost_usd = self._ledger.cost_usd
        if self._call is not None:
            r.usage = dict(self._call.stats.usage)
            r.call_id = self._call.call_id
        return r

    def _take_cause(self) -> bool:
        """The first non-zero Q.850 cause of our channel (or its ;2 half, or a leg it
        dialed) into the result; False when there is none (yet)."""
        for ev in self._hangups:
            cause = _int(ev.get("Cause"))
            if cause:
                self.result.hangup_cause = cause
                self.result.hangup_cause_text = ev.get("Cause-txt")
                return True
        return False

    def _channel_gone(self) -> bool:
        return any(ev.get("Uniqueid") == self.channel_id for ev in self._hangups)

    # ------------------------------------------------------------------ events

    def _accept(self, request: AgiRequest) -> str | None:
        """FastAGI: only our channel, always with our agent (routes do not apply)."""
        if request.uniqueid != self.channel_id:
            log.warning(
                "FastAGI from %s (uniqueid %s) is not this call (%s): refused",
                request.channel or "?",
                request.uniqueid or "?",
                self.channel_id,
            )
            return None
        return self.agent

    def _on_ami_event(self, ev: AmiMessage) -> None:
        if ev.event.lower() == "originateresponse":
            self._originate_events.append(ev)
        else:
            ids = (ev.get("Uniqueid"), ev.get("Linkedid"))
            if self.channel_id in ids or ev.get("Uniqueid") == f"{self.channel_id};2":
                self._hangups.append(ev)
            else:
                return
        self._changed.set()

    def _observe(self, call: Any, kind: str, data: dict[str, Any]) -> None:
        t = _seconds(self.now())
        self._ledger.add(kind, data, t)
        r = self.result
        if kind == "start":
            self._call = call
            r.call_id = call.call_id
            self._line(f"agent {data.get('agent')} on the line (call {call.call_id})")
        elif kind == "caller_transcript":
            r.transcript.append({"t": t, "who": "callee", "text": data.get("text", "")})
            self._line(f"callee: {data.get('text', '')}")
        elif kind == "agent_transcript":
            r.transcript.append({"t": t, "who": "agent", "text": data.get("text", "")})
            self._line(f"agent : {data.get('text', '')}")
        elif kind == "dtmf_sent":
            digit = str(data.get("digit", ""))
            r.digits.append({"digit": digit, "t": t})
            r.transcript.append({"t": t, "who": "agent", "dtmf": digit})
        elif kind == "caller_dtmf":
            r.transcript.append({"t": t, "who": "callee", "dtmf": data.get("digit", "")})
            self._line(f"callee pressed {data.get('digit', '')}")
        elif kind == "tool_call":
            name, args = str(data.get("name", "")), _arguments(data.get("arguments"))
            r.tool_calls.append({"t": t, "name": name, "arguments": args})
            if name == "send_dtmf":
                self._line(f"agent presses {args.get('digits', '?')}")
            elif name == "hangup":
                self._line(f"agent hangs up: {args.get('reason', '')}")
            else:
                self._line(f"agent calls {name}({json.dumps(args)[:120]})")
        elif kind == "tool_result":
            result = data.get("result")
            for entry in reversed(r.tool_calls):
                if entry["name"] == data.get("name") and "result" not in entry:
                    entry["result"] = result
                    break
            if isinstance(result, dict) and not result.get("ok", True):
                self._line(f"tool {data.get('name')} failed: {result.get('error', '')}")
        elif kind == "realtime_error":
            self._line(f"Realtime error {data.get('code') or ''}: {data.get('message', '')}")
        elif kind == "end":
            self._end = dict(data)
            self._line(f"call ended: {_end_text(data)}")
        self._changed.set()

    def _line(self, text: str) -> None:
        self._print(f"{self.now():6.1f}s  {text}")


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


# ---------------------------------------------------------------------------- output


def _digit_groups(digits: list[dict[str, Any]], gap_s: float = 1.0) -> str:
    """``2 at 12.6 s, 1 at 18.7 s, 12345# at 23.3-24.8 s``."""
    groups: list[list[dict[str, Any]]] = []
    for d in digits:
        if groups and d["t"] - groups[-1][-1]["t"] <= gap_s:
            groups[-1].append(d)
        else:
            groups.append([d])
    parts = []
    for g in groups:
        keys = "".join(d["digit"] for d in g)
        when = f"{g[0]['t']:.1f} s" if len(g) == 1 else f"{g[0]['t']:.1f}-{g[-1]['t']:.1f} s"
        parts.append(f"{keys} at {when}")
    return ", ".join(parts) if parts else "none"


def format_result(r: CallResult, *, transcript: bool) -> str:
    """The human summary printed at the end of ``agi-bridge call``."""
    lines = [
        "",
        f"Result: {OUTCOME_TEXT.get(r.outcome, r.outcome)} (exit code {r.exit_code})",
        f"  detail      {r.detail or '-'}",
        f"  called      {r.destination}" + (f"  as {r.dial}" if r.dial != r.destination else ""),
        f"  agent       {r.agent}   goal: {r.goal}",
    ]
    if r.answered:
        lines.append(
            f"  duration    {r.duration_s:.1f} s (answered after {r.answered_after_s or 0:.1f} s"
            f", channel {r.channel})"
        )
    else:
        lines.append(f"  duration    {r.duration_s:.1f} s (not answered)")
    if r.hangup_cause:
        lines.append(f"  hangup      cause {r.hangup_cause} ({r.hangup_cause_text})")
    lines.append(f"  digits      {_digit_groups(r.digits)}")
    tin = sum(v for k, v in r.tokens.items() if k.endswith("_in"))
    tout = sum(v for k, v in r.tokens.items() if k.endswith("_out"))
    cost = f", estimated cost ${r.cost_usd:.4f}" if r.cost_usd is not None else ""
    lines.append(f"  tokens      {tin} in / {tout} out{cost}")
    if r.record_dir:
        lines.append(f"  record      {r.record_dir}")
    if transcript:
        lines.append("  transcript")
        for entry in r.transcript:
            if "text" in entry:
                lines.append(f"    {entry['t']:6.1f}s  {entry['who']}: {entry['text']}")
            else:
                lines.append(f"    {entry['t']:6.1f}s  {entry['who']} pressed {entry['dtmf']}")
        if not r.transcript:
            lines.append("    (nothing was said)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- CLI

EPILOG = """\
destinations:
  PJSIP/6002                a channel, as Originate takes it (PJSIP/5551234@trunk ...)
  Local/500@agi-bridge-ivr-demo   a dialplan extension (the demo phone menu)
  5551234                   a plain number: Local/5551234@<outbound.dial_context>

The agent reports the goal achieved by hanging up with a reason starting with
"goal achieved" (it is told so); anything else is "goal not achieved".

exit codes:
  0  goal achieved            5  busy
  1  goal not achieved        6  congestion
  2  usage or config error    7  failed (invalid destination, unreachable, bridge error)
  3  the far end hung up      8  timeout (--timeout)
  4  no answer                130 interrupted (Ctrl-C)

--csv FILE: one call per row (header: destination, and optionally goal, agent,
caller_id; empty cells use --goal/--agent/--caller-id), --concurrency at a time. Exit
code 0 when every call achieved its goal, else 1 (each result has its own outcome and
exit_code); --json prints a list.
"""


def add_cli(sub: Any) -> None:
    """``agi-bridge call`` (``sub``: the subparsers of the main parser)."""
    p = sub.add_parser(
        "call",
        help="place an outbound call: an agent dials, navigates menus, reaches a goal",
        description="Place an outbound call through AMI Originate; the agent works toward "
        "the goal (pressing keys, talking) and the result is printed at the end.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "destination",
        nargs="?",
        help="PJSIP/ENDPOINT, TECH/..., Local/EXTEN@CONTEXT or a number (or --csv)",
    )
    p.add_argument("-c", "--config", help="YAML config file (default: built-in defaults)")
    p.add_argument("--agent", required=True, help="agent of the config that makes the call")
    p.add_argument("--goal", help="what the agent must achieve on the call (required)")
    p.add_argument(
        "--timeout",
        type=float,
        help="whole call, dialing included (default outbound.timeout_s, 300)",
    )
    p.add_argument(
        "--ring-timeout",
        type=float,
        help="how long it may ring (default outbound.ring_timeout_s, 30)",
    )
    p.add_argument(
        "--caller-id", help="CallerID, e.g. '\"Bot\" <5551000>' (default outbound.caller_id)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument(
        "--record",
        metavar="DIR",
        help="write the call record (events, summary, stereo wav, result.json) under DIR",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no live transcript")
    p.add_argument(
        "--scenario", help="scenario YAML for the bundled simulator (when no Realtime key is set)"
    )
    p.add_argument("--csv", metavar="FILE", help="call every destination of a CSV file")
    p.add_argument(
        "--concurrency", type=int, default=1, help="--csv: calls at the same time (default 1)"
    )


def read_csv(path: str) -> list[dict[str, str]]:
    """Rows of a ``--csv`` file: a header with ``destination`` (and optionally goal, agent,
    caller_id); empty lines and lines starting with ``#`` are skipped."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            lines = [line for line in f if line.strip() and not line.lstrip().startswith("#")]
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=path) from exc
    reader = csv.DictReader(lines)
    fields = [name.strip() for name in reader.fieldnames or []]
    if "destination" not in fields:
        raise ConfigError("the CSV needs a header with a 'destination' column", file=path)
    unknown = set(fields) - {"destination", "goal", "agent", "caller_id"}
    if unknown:
        raise ConfigError(f"unknown CSV columns {sorted(unknown)}", file=path)
    rows = []
    for row in reader:
        clean = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if clean.get("destination"):
            rows.append(clean)
    if not rows:
        raise ConfigError("no destinations in the CSV", file=path)
    return rows


def run_cli(args: argparse.Namespace, config: Config) -> int:
    """Run ``agi-bridge call`` from parsed arguments; returns the exit code."""
    if args.record:
        config = dataclasses.replace(
            config,
            records=dataclasses.replace(config.records, enabled=True, dir=args.record, wav=True),
        )
    scenario = None
    if args.scenario:
        from agi_bridge.simulator import Scenario

        scenario = Scenario.from_yaml(args.scenario)
    live = sys.stderr if args.json else sys.stdout

    def printer(prefix: str = "") -> Printer:
        def show(line: str) -> None:
            if not args.quiet:
                print(f"{prefix}{line}", file=live, flush=True)

        return show

    def runner(destination: str, row: dict[str, str], prefix: str = "") -> OutboundCall:
        goal = row.get("goal") or args.goal
        if not goal:
            raise ConfigError("a goal is needed (--goal, or a goal column with --csv)")
        return OutboundCall(
            config,
            destination,
            agent=row.get("agent") or args.agent,
            goal=goal,
            timeout_s=args.timeout,
            ring_timeout_s=args.ring_timeout,
            caller_id=row.get("caller_id") or args.caller_id,
            printer=printer(prefix),
            simulator_scenario=scenario,
        )

    if args.csv:
        if args.destination:
            raise ConfigError("give a destination or --csv, not both")
        if args.concurrency < 1:
            raise ConfigError("must be >= 1", key="--concurrency")
        rows = read_csv(args.csv)
        width = len(str(len(rows)))
        runners = []
        for i, row in enumerate(rows, start=1):
            try:
                runners.append(runner(row["destination"], row, f"[{i:>{width}}] "))
            except ConfigError as exc:
                raise ConfigError(f"row {i}: {exc}", file=args.csv) from None
    else:
        if not args.destination:
            raise ConfigError("a destination is needed (or --csv FILE)")
        runners = [runner(args.destination, {})]

    async def main() -> list[CallResult]:
        def interrupt() -> None:
            for r in runners:
                r.interrupt()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, interrupt)
        slots = asyncio.Semaphore(args.concurrency)

        async def one(r: OutboundCall) -> CallResult:
            async with slots:
                if r.interrupted:  # Ctrl-C while it waited for a slot
                    return r.skip("interrupted (Ctrl-C) before dialing")
                return await r.run()

        return list(await asyncio.gather(*(one(r) for r in runners)))

    results = asyncio.run(main())
    for result in results:
        if result.record_dir:
            with contextlib.suppress(OSError):
                Path(result.record_dir, "result.json").write_text(
                    json.dumps(result.to_json(), indent=2) + "\n"
                )
    if not args.csv:
        result = results[0]
        if args.json:
            print(json.dumps(result.to_json(), indent=2))
        else:
            print(format_result(result, transcript=args.quiet))
        return result.exit_code
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        print(format_batch(results))
    return 0 if all(r.outcome == "goal_achieved" for r in results) else 1


def format_batch(results: list[CallResult]) -> str:
    """One line per call of a ``--csv`` run, then the count per outcome."""
    lines = ["", f"Results ({len(results)} calls):"]
    width = max(len(r.destination) for r in results)
    for i, r in enumerate(results, start=1):
        lines.append(
            f"  {i:>3}  {r.destination:<{width}}  {r.outcome:<17} exit {r.exit_code:<3} "
            f"{r.duration_s:6.1f} s  digits {r.digits_sent or '-':<8} {r.detail}"
        )
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    lines.append("  " + ", ".join(f"{n} {OUTCOME_TEXT.get(o, o)}" for o, n in counts.items()))
    return "\n".join(lines)
