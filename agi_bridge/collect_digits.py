"""The ``collect_digits`` tool: the caller types a PIN or a card number, the digits go to
a configured webhook, the model learns only how many there were (see digits.py for the
collection and the masking)."""

from __future__ import annotations

from typing import Any

from agi_bridge.config import WebhookTool
from agi_bridge.digits import MAX_DIGITS as MAX_COLLECT_DIGITS
from agi_bridge.errors import ToolError
from agi_bridge.tools import CallControls, Tool, call_webhook

COLLECT_DIGITS_TIMEOUT_S = 15.0  # default wait for the first digit


def collect_digits_tool(webhook_name: str, spec: WebhookTool) -> Tool:
    """``collect_digits(purpose, max_digits, terminator?, timeout_s?)``: the caller types a
    PIN or a card number; the digits go to the ``webhook_name`` webhook (``{"arguments":
    {"purpose", "digits"}, "call": ...}``) and the model learns only how many there were
    and whether the service accepted them, never the digits or the service's answer."""

    async def handler(call: CallControls, args: dict[str, Any]) -> dict[str, Any]:
        purpose = args.get("purpose", "")
        if not isinstance(purpose, str):
            raise ToolError("purpose must be a string")
        max_digits = args.get("max_digits")
        if not isinstance(max_digits, int) or isinstance(max_digits, bool):
            raise ToolError("max_digits must be an integer")
        if not 1 <= max_digits <= MAX_COLLECT_DIGITS:
            raise ToolError(f"max_digits must be 1..{MAX_COLLECT_DIGITS}")
        terminator = args.get("terminator", "#")
        if terminator not in ("#", "*", ""):
            raise ToolError("terminator must be '#', '*' or ''")
        timeout_s = args.get("timeout_s", COLLECT_DIGITS_TIMEOUT_S)
        if not isinstance(timeout_s, (int, float)) or not 1 <= timeout_s <= 120:
            raise ToolError("timeout_s must be a number of seconds, 1..120")
        digits = await call.collect_digits(max_digits, terminator, float(timeout_s))
        if not digits:
            return {"ok": False, "collected_digits": 0, "error": "the caller typed nothing"}
        sent = await call_webhook(
            webhook_name,
            spec,
            {"purpose": purpose.strip(), "digits": digits},
            call.call_info(),
        )
        result: dict[str, Any] = {"ok": bool(sent.get("ok")), "collected_digits": len(digits)}
        if not sent.get("ok"):
            # the service's own words may echo the digits: only the status goes back
            result["error"] = "the digits could not be delivered to the service"
        return result

    return Tool(
        "collect_digits",
        "Let the caller type a number on the phone keypad (a PIN, an account or card "
        "number). First tell the caller what to type and to finish with the pound key. "
        "The digits go straight to a secure service: you never see them, you only learn "
        "how many were collected and whether the service accepted them.",
        {
            "type": "object",
            "properties": {
                "purpose": {"type": "string", "description": "What the digits are, e.g. 'PIN'"},
                "max_digits": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_COLLECT_DIGITS,
                    "description": "The most digits to collect",
                },
                "terminator": {
                    "type": "string",
                    "enum": ["#", "*", ""],
                    "description": "The key that ends the entry (default '#')",
                },
                "timeout_s": {
                    "type": "number",
                    "description": "Seconds to wait for the first digit (default 15)",
                },
            },
            "required": ["purpose", "max_digits"],
            "additionalProperties": False,
        },
        handler,
    )
