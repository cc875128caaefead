"""Tools the agent can call: their JSON schemas (sent in ``session.update``) and handlers.

A handler gets the call's controls and the parsed arguments and returns the result object
that goes back to the model as ``function_call_output``. Bad arguments and failures are
results (``{"ok": false, "error": ...}``), never exceptions that end the call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agi_bridge.errors import AmiError, ToolError

log = logging.getLogger(__name__)

DTMF_RE = re.compile(r"^[0-9*#A-Dw]+$")
MAX_DTMF_DIGITS = 64

IVR_GUIDANCE = """\
# Navigating phone menus (IVR)
You can press phone keys with the send_dtmf tool.
- When a recorded menu lists options, do not talk over it: stay silent, listen to the end
  of the options that matter, then call send_dtmf with the digit. Do not say the digit aloud.
- Act fast: menus time out. Send digits as soon as you know which option fits the goal.
- For account or reference numbers, send all digits in one call, with '#' if the menu asks
  for it. Use 'w' for a half-second pause between groups when needed.
- If the menu says "invalid option" or repeats, listen again and choose again; do not
  repeat the same digit more than twice.
- On hold music or "please wait", stay silent and wait; do not hang up.
- When a human answers, speak normally.
"""


class CallControls(Protocol):
    """What tools may do to the call they run in (implemented by Call)."""

    call_id: str

    async def play_dtmf(self, digit: str) -> None: ...

    async def dtmf_pause(self) -> None: ...

    async def end_call(self, reason: str) -> None: ...


Handler = Callable[[CallControls, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: Handler
    # True when the result should be followed by response.create (the model continues)
    continue_after: bool = True

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }


def parse_digits(value: Any) -> str:
    """Validate a DTMF string: 0-9 * # A-D and w (pause); raises ToolError saying why."""
    if not isinstance(value, str) or not value:
        raise ToolError("digits must be a non-empty string")
    digits = value.replace(" ", "").replace("-", "")
    digits = "".join(c.upper() if c in "abcd" else c for c in digits)
    if not DTMF_RE.match(digits):
        bad = sorted({c for c in digits if not DTMF_RE.match(c)})
        raise ToolError(f"invalid DTMF characters {''.join(bad)!r}: use 0-9 * # A-D and w")
    if len(digits) > MAX_DTMF_DIGITS:
        raise ToolError(f"too many digits ({len(digits)} > {MAX_DTMF_DIGITS})")
    return digits


async def _send_dtmf(call: CallControls, args: dict[str, Any]) -> dict[str, Any]:
    digits = parse_digits(args.get("digits"))
    sent = ""
    for digit in digits:
        try:
            if digit == "w":
                await call.dtmf_pause()
            else:
                await call.play_dtmf(digit)
        except AmiError as exc:
            return {"ok": False, "error": f"DTMF failed: {exc}", "digits_sent": sent}
        sent += digit
    return {"ok": True, "digits_sent": sent}


async def _hangup(call: CallControls, args: dict[str, Any]) -> dict[str, Any]:
    reason = args.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ToolError("reason must be a non-empty string")
    await call.end_call(reason.strip())
    return {"ok": True}


SEND_DTMF = Tool(
    "send_dtmf",
    "Press phone keys (DTMF) on the call, e.g. to choose an option in a phone menu. "
    "Digits 0-9, *, #, A-D; 'w' waits half a second.",
    {
        "type": "object",
        "properties": {
            "digits": {
                "type": "string",
                "description": "Keys to press in order, e.g. '1', '2w3', '123456#'",
            }
        },
        "required": ["digits"],
        "additionalProperties": False,
    },
    _send_dtmf,
)

HANGUP = Tool(
    "hangup",
    "End the phone call after your last sentence has been heard. Say goodbye first, in "
    "the same turn. Give the reason, e.g. 'goal achieved: balance is $12', 'caller said "
    "goodbye'.",
    {
        "type": "object",
        "properties": {"reason": {"type": "string", "description": "Why the call ends"}},
        "required": ["reason"],
        "additionalProperties": False,
    },
    _hangup,
    continue_after=False,
)

BUILTIN: dict[str, Tool] = {t.name: t for t in (SEND_DTMF, HANGUP)}


class ToolSet:
    """The tools one agent has, and their dispatch."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.tools = {n: BUILTIN[n] for n in names}

    def schemas(self) -> tuple[dict[str, Any], ...]:
        return tuple(t.schema() for t in self.tools.values())

    def continues(self, name: str) -> bool:
        tool = self.tools.get(name)
        return tool.continue_after if tool else True

    async def run(self, call: CallControls, name: str, arguments: str) -> dict[str, Any]:
        """Run a tool; every failure becomes an error result for the model."""
        tool = self.tools.get(name)
        if tool is None:
            return {"ok": False, "error": f"unknown tool {name!r}"}
        try:
            args = json.loads(arguments or "{}")
        except ValueError as exc:
            return {"ok": False, "error": f"arguments are not JSON: {exc}"}
        if not isinstance(args, dict):
            return {"ok": False, "error": "arguments must be a JSON object"}
        try:
            return await tool.handler(call, args)
        except ToolError as exc:
            return {"ok": False, "error": str(exc)}
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a tool bug must not end the call; the model is told
            log.exception("call %s: tool %s failed", call.call_id, name)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
