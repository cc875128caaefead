"""Tools the agent can call: their JSON schemas (sent in ``session.update``) and handlers.

A handler gets the call's controls and the parsed arguments and returns the result object
that goes back to the model as ``function_call_output``. Bad arguments and failures are
results (``{"ok": false, "error": ...}``), never exceptions that end the call.

Built-in tools: ``send_dtmf``, ``hangup``, ``transfer`` (to the agent's
``transfer_targets``), ``switch_agent`` (to its ``handoff_agents``), ``collect_digits``
(to its ``collect_digits_webhook``). Webhook tools are
declared in the top-level ``tools:`` section and carried out as one HTTP request each.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from agi_bridge import __version__
from agi_bridge.config import Config, TransferTarget, WebhookTool
from agi_bridge.errors import ControlError, ToolError
from agi_bridge.protocol import dtmf

log = logging.getLogger(__name__)

DTMF_RE = re.compile(f"^[{re.escape(dtmf.DIGITS + dtmf.PAUSE)}]+\\Z")
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

    async def transfer(self, name: str, target: TransferTarget, summary: str) -> None:
        """Play out, then move the channel; raises ControlError when that fails."""
        ...

    async def switch_agent(self, name: str) -> None: ...

    def call_info(self) -> dict[str, str]:
        """call_id, agent, caller_id, dnid, channel (what a webhook is told)."""
        ...

    async def collect_digits(self, max_digits: int, terminator: str, timeout_s: float) -> str:
        """The digits the caller types next (masked everywhere, never sent to the model);
        raises ToolError when a collection is already running."""
        ...


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
    if not digits:
        raise ToolError("digits must contain at least one key")
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
        except ControlError as exc:
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


def _choices(items: Mapping[str, str]) -> str:
    return "; ".join(f"{name}: {text}" if text else name for name, text in items.items())


def transfer_tool(targets: Mapping[str, TransferTarget]) -> Tool:
    """``transfer(destination, summary?)`` limited to *targets* (names in the schema enum)."""
    names = list(targets)

    async def handler(call: CallControls, args: dict[str, Any]) -> dict[str, Any]:
        destination = args.get("destination")
        if not isinstance(destination, str) or destination not in targets:
            raise ToolError(
                f"unknown destination {destination!r}: choose one of {', '.join(names)}"
            )
        summary = args.get("summary", "")
        if not isinstance(summary, str):
            raise ToolError("summary must be a string")
        try:
            await call.transfer(destination, targets[destination], summary.strip())
        except ControlError as exc:
            return {"ok": False, "error": f"transfer failed: {exc}", "destination": destination}
        return {"ok": True, "destination": destination}

    return Tool(
        "transfer",
        "Transfer the caller to a person or department. First tell the caller, in the same "
        "turn, that you are transferring them; the transfer happens once that sentence has "
        "been heard, and your part of the call ends. Destinations: "
        + _choices({n: t.description for n, t in targets.items()}),
        {
            "type": "object",
            "properties": {
                "destination": {
                    "type": "string",
                    "enum": names,
                    "description": "Where to transfer the caller",
                },
                "summary": {
                    "type": "string",
                    "description": "A short summary of the call so far, for whoever takes over",
                },
            },
            "required": ["destination"],
            "additionalProperties": False,
        },
        handler,
        continue_after=False,
    )


def switch_agent_tool(agents: Mapping[str, str]) -> Tool:
    """``switch_agent(name)``: *agents* maps the allowed names to their descriptions."""
    names = list(agents)

    async def handler(call: CallControls, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("name")
        if not isinstance(name, str) or name not in agents:
            raise ToolError(f"unknown agent {name!r}: choose one of {', '.join(names)}")
        await call.switch_agent(name)
        return {
            "ok": True,
            "agent": name,
            "message": f"The conversation was handed to the {name!r} agent: you are that "
            "agent now, with its instructions. Continue the conversation with the caller "
            "without greeting again.",
        }

    return Tool(
        "switch_agent",
        "Hand the conversation to another agent that is better suited to what the caller "
        "needs; the caller stays on the line. Agents: " + _choices(agents),
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": names, "description": "The agent to hand to"}
            },
            "required": ["name"],
            "additionalProperties": False,
        },
        handler,
    )


# What a webhook may send back at most (bytes read), whatever max_response_chars says.
WEBHOOK_MAX_READ = 256 * 1024


def webhook_tool(name: str, spec: WebhookTool) -> Tool:
    """A configured HTTP tool: the arguments and the call's identity go to ``spec.url``."""

    async def handler(call: CallControls, args: dict[str, Any]) -> dict[str, Any]:
        return await call_webhook(name, spec, args, call.call_info())

    return Tool(name, spec.description, _plain(spec.parameters), handler)


def _plain(value: Any) -> Any:
    """Read-only mappings from the config -> JSON-ready dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


async def call_webhook(
    name: str, spec: WebhookTool, args: dict[str, Any], call: dict[str, str]
) -> dict[str, Any]:
    """One request to the configured URL; every failure is a result, never an exception.

    POST sends ``{"arguments": ..., "call": {...}}`` as JSON; GET sends the arguments as
    query parameters and the call as ``X-AGI-Bridge-*`` headers. Redirects are not
    followed (only the configured URL is ever called). Header values named in
    ``headers_env`` come from the environment now and are never logged.
    """
    headers = {"User-Agent": f"agi-bridge/{__version__}", "Accept": "application/json, */*"}
    for header, var in spec.headers_env.items():
        value = os.environ.get(var)
        if value is None:
            log.warning(
                "call %s: webhook %s: environment variable %s is not set",
                call.get("call_id", "-"),
                name,
                var,
            )
            return {"ok": False, "error": "the tool is not configured on the server"}
        headers[header] = value
    started = time.monotonic()
    url = spec.url.split("?")[0]
    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=spec.timeout_s)
        ) as session:
            if spec.method == "GET":
                call_headers = {
                    f"X-AGI-Bridge-{key.replace('_', '-').title()}": value
                    for key, value in call.items()
                    if value
                }
                request = session.get(
                    spec.url,
                    params=_query(args),
                    headers={**call_headers, **headers},
                    allow_redirects=False,
                )
            else:
                request = session.post(
                    spec.url,
                    json={"arguments": args, "call": call},
                    headers=headers,
                    allow_redirects=False,
                )
            async with request as response:
                raw = await _read_limited(response, WEBHOOK_MAX_READ)
                status, reason, charset = response.status, response.reason, response.charset
    except TimeoutError:
        log.warning(
            "call %s: webhook %s %s %s timed out after %g s",
            call.get("call_id", "-"),
            name,
            spec.method,
            url,
            spec.timeout_s,
        )
        return {"ok": False, "error": f"the service did not answer within {spec.timeout_s:g} s"}
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        log.warning(
            "call %s: webhook %s %s %s failed: %s",
            call.get("call_id", "-"),
            name,
            spec.method,
            url,
            exc,
        )
        return {"ok": False, "error": f"the service could not be reached ({type(exc).__name__})"}
    elapsed_ms = (time.monotonic() - started) * 1000
    log.info(
        "call %s: webhook %s %s %s -> %d (%d bytes, %.0f ms)",
        call.get("call_id", "-"),
        name,
        spec.method,
        url,
        status,
        len(raw),
        elapsed_ms,
    )
    body, truncated = _body(raw, charset, spec.max_response_chars)
    if not 200 <= status < 300:
        return {"ok": False, "error": f"HTTP {status} {reason or ''}".strip(), "body": body}
    result: dict[str, Any] = {"ok": True, "status": status, "body": body}
    if truncated:
        result["truncated"] = True
    return result


def _query(args: Mapping[str, Any]) -> dict[str, str]:
    """Arguments as query parameters: strings as they are, anything else as JSON."""
    return {
        str(k): v if isinstance(v, str) else json.dumps(v) for k, v in args.items() if v is not None
    }


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    data = bytearray()
    while len(data) < limit:
        chunk = await response.content.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _body(raw: bytes, charset: str | None, max_chars: int) -> tuple[Any, bool]:
    """JSON when it parses and fits in *max_chars*, else the text cut to *max_chars*."""
    try:
        text = raw.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset name
        text = raw.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    else:
        if len(json.dumps(parsed)) <= max_chars:
            return parsed, False
    if len(text) > max_chars:
        return text[:max_chars], True
    return text, False


class ToolSet:
    """The tools one agent has, and their dispatch."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self.tools = {t.name: t for t in tools}

    @classmethod
    def for_agent(cls, config: Config, agent_name: str) -> ToolSet:
        """The tools of an agent: its ``tools`` list (built-ins and webhooks), plus transfer
        and switch_agent when it has destinations for them."""
        agent = config.agents[agent_name]
        tools: list[Tool] = []
        for name in agent.tools:
            if name in BUILTIN:
                tools.append(BUILTIN[name])
            elif name == "collect_digits" and agent.collect_digits_webhook in config.tools:
                from agi_bridge.collect_digits import collect_digits_tool  # it imports us

                webhook = agent.collect_digits_webhook
                tools.append(collect_digits_tool(webhook, config.tools[webhook]))
            elif name in config.tools:
                tools.append(webhook_tool(name, config.tools[name]))
        if agent.transfer_targets:
            tools.append(transfer_tool(agent.transfer_targets))
        handoff = {
            n: config.agents[n].description for n in agent.handoff_agents if n in config.agents
        }
        if handoff:
            tools.append(switch_agent_tool(handoff))
        return cls(tools)

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
