"""The lookup webhook: before the greeting, ask a service about the call (e.g. the
customer record for the caller ID) and make the answer available to the prompts.

An agent with ``lookup_webhook: NAME`` (a webhook in ``tools:``) gets, before its
session starts, one request to that webhook with the call's values as arguments
(``caller_id``, ``dnid``, variables). The answer becomes prompt values:

* ``{lookup}``: the body (JSON text, or the text as sent), cut like any value;
* ``{lookup_KEY}``: each top-level scalar field of a JSON object body.

A failed lookup (timeout, HTTP error) leaves ``{lookup}`` empty and the call goes on:
a lookup enriches the prompt, it never holds a call hostage. Where it runs:
``agi-bridge call`` (outbound/call.py), before dialing. Inbound calls (``serve``) do not
run it yet; their prompts get the call's own values ({caller_id}, {dnid}, variables).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from agi_bridge.config import Config
from agi_bridge.prompt_context import VAR_NAME
from agi_bridge.tools import call_webhook

log = logging.getLogger(__name__)


def values_from_result(result: Mapping[str, Any]) -> dict[str, str]:
    """A webhook result (tools.call_webhook) -> prompt values."""
    if not result.get("ok"):
        return {"lookup": ""}
    body = result.get("body")
    values = {"lookup": body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)}
    if isinstance(body, Mapping):
        for key, value in body.items():
            name = f"lookup_{key}"
            if not VAR_NAME.match(name) or isinstance(value, (Mapping, list)) or value is None:
                continue
            values[name] = json.dumps(value) if isinstance(value, bool) else str(value)
    return values


async def lookup_values(
    config: Config, agent: str, context: Mapping[str, str], call: Mapping[str, str]
) -> dict[str, str]:
    """The lookup of ``agent`` for a call ({} when the agent has none)."""
    name = config.agents[agent].lookup_webhook
    if not name:
        return {}
    result = await call_webhook(name, config.tools[name], dict(context), dict(call))
    if not result.get("ok"):
        log.warning("lookup %s failed: %s", name, result.get("error", "?"))
    return values_from_result(result)
