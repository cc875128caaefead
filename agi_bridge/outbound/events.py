"""What an outbound call hears from Asterisk (AMI events) and from its agent's call
(call events): turned into the :class:`CallResult`, the live lines and the watcher's
events. A mixin of :class:`~agi_bridge.outbound.call.OutboundCall`, which owns the state."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from agi_bridge.asterisk.ami import AmiMessage
from agi_bridge.outbound.result import (
    CallResult,
    Printer,
    Watcher,
    _arguments,
    _end_text,
    _int,
    _seconds,
)
from agi_bridge.records import Ledger


class CallEvents:
    # owned and set up by OutboundCall.__init__
    channel_id: str
    amd: str
    result: CallResult
    _t0: float
    _changed: asyncio.Event
    _originate_events: list[AmiMessage]
    _hangups: list[AmiMessage]
    _call: Any
    _end: dict[str, Any] | None
    _ledger: Ledger
    _print: Printer
    _watch: Watcher | None

    def now(self) -> float:
        return time.monotonic() - self._t0

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

    def _on_user_event(self, ev: AmiMessage) -> None:
        """The AMD() result of our channel (UserEvent AgiBridgeAmd from the dialplan)."""
        if ev.get("UserEvent") != "AgiBridgeAmd" or ev.get("Uniqueid") != self.channel_id:
            return
        amd = {"status": ev.get("Status"), "cause": ev.get("Cause"), "policy": self.amd}
        self.result.amd = amd
        t = _seconds(self.now())
        self._line(f"AMD: {amd['status']} ({amd['cause']}), policy {self.amd}")
        if self._watch is not None:
            self._watch("amd", dict(amd), t)
        self._changed.set()

    def _on_dtmf_event(self, ev: AmiMessage) -> None:
        """Digits on the wire: DTMFEnd of our channel as sent, or, for a Local/ channel,
        as the ;2 half received them (PlayDTMF on ;1 raises no event on ;1 itself)."""
        uniqueid, direction = ev.get("Uniqueid"), ev.get("Direction").lower()
        ours = (uniqueid == self.channel_id and direction == "sent") or (
            uniqueid == f"{self.channel_id};2" and direction == "received"
        )
        if not ours:
            return
        digit = ev.get("Digit")
        t = _seconds(self.now())
        entry: dict[str, Any] = {
            "digit": digit,
            "t": t,
            "duration_ms": _int(ev.get("DurationMs")),
            "channel": ev.get("Channel"),
            "direction": direction,
        }
        self.result.wire_digits.append(entry)
        if self._watch is not None:
            self._watch("wire_dtmf", entry, t)
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
        if self._watch is not None:
            self._watch(kind, data, t)
        self._changed.set()

    def _line(self, text: str) -> None:
        self._print(f"{self.now():6.1f}s  {text}")
