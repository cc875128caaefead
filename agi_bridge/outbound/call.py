"""One outbound call: AMI connection, its own Bridge, Originate, outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from agi_bridge.app import Bridge, ami_client
from agi_bridge.asterisk.agi import requested_agent
from agi_bridge.asterisk.ami import AmiClient, AmiMessage
from agi_bridge.config import Config
from agi_bridge.errors import AmiError, BridgeError, ConfigError
from agi_bridge.lookup import lookup_values
from agi_bridge.outbound.events import CallEvents
from agi_bridge.outbound.result import (
    AMD_POLICIES,
    AMI_CONNECT_TIMEOUT_S,
    END_GRACE_S,
    GOAL_ACHIEVED,
    HANGUP_EVENT_WAIT_S,
    ORIGINATE_REASONS,
    OUTCOME_TEXT,
    CallResult,
    Printer,
    Watcher,
    _int,
    _seconds,
    bridge_host,
    dial_string,
    goal_config,
    voicemail_config,
)
from agi_bridge.prompt_context import prompt_context, substitute
from agi_bridge.protocol.agi import AgiRequest
from agi_bridge.records import Ledger

log = logging.getLogger(__name__)


class OutboundCall(CallEvents):
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
        variables: Mapping[str, str] | None = None,
        watch: Watcher | None = None,
        amd: str = "",
        voicemail_message: str = "",
    ) -> None:
        if not config.ami.enabled:
            raise ConfigError("outbound calls need AMI (ami.enabled: true)", key="ami.enabled")
        out = config.outbound
        self.timeout_s = out.timeout_s if timeout_s is None else timeout_s
        self.ring_timeout_s = out.ring_timeout_s if ring_timeout_s is None else ring_timeout_s
        if self.timeout_s <= 0 or self.ring_timeout_s <= 0:
            raise ConfigError("timeouts must be > 0", key="--timeout")
        self.config = config
        self.destination = destination
        self.dial = dial_string(destination, out.dial_context)
        self.agent = agent
        self.caller_id = out.caller_id if caller_id is None else caller_id
        self.variables = dict(variables or {})
        self._watch = watch
        if amd and amd not in AMD_POLICIES:
            raise ConfigError(f"expected one of {', '.join(AMD_POLICIES)}", key="--amd")
        self.amd = amd
        self.voicemail_agent = ""
        self._voicemail = False  # the voicemail agent joined (--amd message)
        self._texts = (goal, greeting, voicemail_message)  # before substitution
        self.context = prompt_context(self.caller_id, destination, self.variables)
        self._configure()
        self.channel_id = channel_id or str(uuid.uuid4())
        self._print = printer or (lambda line: None)
        self._scenario = simulator_scenario
        self._t0 = time.monotonic()
        self._changed = asyncio.Event()
        self._originate_events: list[AmiMessage] = []
        self._hangups: list[AmiMessage] = []
        self._call: Any = None  # agi_bridge.call.Call once the agent has joined
        self._end: dict[str, Any] | None = None
        self._stop_reason: str | None = None  # "timeout" | "interrupted" | stop(), set by us
        self._stop_detail = ""
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

    def _configure(self) -> None:
        """The call's config from the prompt values known now (again after a lookup)."""
        goal, greeting, voicemail_message = self._texts
        self.goal = substitute(goal.strip(), self.context)
        self.call_config = goal_config(self.config, self.agent, self.goal, greeting, self.context)
        if self.amd == "message":
            message = substitute(voicemail_message.strip(), self.context) or (
                f"(say who you are and why you called: {self.goal})"
            )
            self.call_config, self.voicemail_agent = voicemail_config(
                self.call_config, self.agent, message
            )

    async def _lookup(self) -> None:
        """The agent's lookup webhook, before dialing: {lookup}, {lookup_KEY}."""
        if not self.config.agents[self.agent].lookup_webhook:
            return
        call = {
            "call_id": self.channel_id,
            "agent": self.agent,
            "caller_id": self.caller_id,
            "dnid": self.destination,
            "channel": self.dial,
        }
        found = await lookup_values(self.config, self.agent, self.context, call)
        self.context.update(found)
        self._configure()
        self.result.goal = self.goal
        self._line(f"lookup: {len(found.get('lookup', ''))} characters")

    # ------------------------------------------------------------------ running

    def interrupt(self) -> None:
        """Ctrl-C: hang up and report ``interrupted`` (safe to call more than once)."""
        if self._stop_reason is None:
            self._stop_reason = "interrupted"
        self._changed.set()

    def stop(self, outcome: str, detail: str) -> None:
        """End the call now with this outcome (``agi-bridge test``: stuck, dead_air)."""
        if self._stop_reason is None:
            self._stop_reason, self._stop_detail = outcome, detail
            self._line(f"stopping: {outcome}: {detail}")
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
            ami.add_event_listener("DTMFEnd", self._on_dtmf_event),
            ami.add_event_listener("UserEvent", self._on_user_event),
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
            await self._lookup()
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
        if self.amd:  # the dialplan runs AMD() first ([agi-bridge-amd])
            variables["AGI_BRIDGE_AMD"] = self.amd
            if self.voicemail_agent:
                variables["AGI_BRIDGE_AMD_AGENT"] = self.voicemail_agent
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
        if self._watch is not None:
            self._watch("answered", {"channel": self.result.channel}, self.result.answered_after_s)

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
        if self._stop_detail:
            return self._stop_detail
        if self._stop_reason == "interrupted":
            return "interrupted (Ctrl-C)"
        return f"no result within --timeout {self.timeout_s:g} s"

    # ------------------------------------------------------------------ outcome

    def _conclude(self) -> None:
        end = self._end
        amd = self.result.amd
        if end is None and amd.get("status") == "MACHINE" and self.amd == "hangup":
            self._finish("machine", f"answering machine ({amd.get('cause')}): hung up (--amd)")
            return
        if end is not None and self._voicemail and self._stop_reason is None:
            said = any(e["who"] == "agent" and e.get("text") for e in self.result.transcript)
            self.result.end_reason = str(end.get("reason", ""))
            if said:
                self._finish("voicemail_left", f"message left after the beep ({amd.get('cause')})")
            else:
                self._finish("goal_not_achieved", "answering machine: no message was left")
            return
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
        """FastAGI: only our channel, with our agent (routes do not apply), or the
        voicemail agent when the dialplan's AMD step asks for it (--amd message)."""
        if request.uniqueid != self.channel_id:
            log.warning(
                "FastAGI from %s (uniqueid %s) is not this call (%s): refused",
                request.channel or "?",
                request.uniqueid or "?",
                self.channel_id,
            )
            return None
        if self.voicemail_agent and requested_agent(request) == self.voicemail_agent:
            self._voicemail = True
            self._line("answering machine: the agent leaves the message")
            return self.voicemail_agent
        return self.agent
