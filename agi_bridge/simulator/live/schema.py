"""GPT-Live client events validated strictly, as pure functions (no I/O).

The service's session object "rejects unknown fields" (Azure gpt-live-reference); the event
and field names below are those of the @azure/ai-projects typed models and the
OpenAPI-generated openai-client-base 0.16.0 ``Live*`` models (see protocol/gpt_live.py).
What the references do not give (the exact error *codes* for an unknown event type or a
command before ``session.started``) is the simulator's own wording, named as such.

A Realtime-shaped client (``input_audio_buffer.append``, ``session.update`` with
``type: "realtime"``...) fails here, as it would against the real endpoint.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection
from typing import Any

from agi_bridge.simulator.schema import SchemaError

# client event type -> its fields besides "type" and "event_id" (True = required)
CLIENT_EVENTS: dict[str, dict[str, bool]] = {
    "session.start": {"session": True},
    "session.update": {"session": True},
    "session.input_audio.append": {"audio": True},
    "session.input_audio.mute": {},
    "session.input_audio.unmute": {},
    # content: a plain string (<= 500 tokens); delegation_id: required, nullable
    "session.instructions.append": {"content": True, "delegation_id": True},
    "session.thinking.append": {"content": True, "delegation_id": True},
    "session.commentary.append": {"content": True, "delegation_id": True},
    "response.item.create": {"item": True},  # responses delegation only
    "response.create": {},  # responses delegation only
    "session.close": {},
}
SESSION_KEYS = frozenset(
    {"model", "instructions", "input", "audio", "delegation", "store", "triggers"}
)
# fixed at startup: "Voice and format are immutable after startup"; model: new session
STARTUP_ONLY = frozenset({"model", "audio", "input"})
PCM_RATES = (16000, 24000)
G711_RATE = 8000
VOICE_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
RESPONSES_KEYS = frozenset(
    {
        "model",
        "instructions",
        "max_output_tokens",
        "service_tier",
        "reasoning",
        "text",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
    }
)


def reject_unknown(obj: dict[str, Any], allowed: Collection[str], prefix: str) -> None:
    for key in obj:
        if key not in allowed:
            param = f"{prefix}.{key}" if prefix else key
            raise SchemaError("unknown_parameter", f"Unknown parameter: '{param}'.", param)


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SchemaError("invalid_type", f"Invalid type for '{param}': expected an object.", param)
    return value


def require_string(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise SchemaError("invalid_type", f"Invalid type for '{param}': expected a string.", param)
    return value


def _missing(param: str) -> SchemaError:
    return SchemaError(
        "missing_required_parameter", f"Missing required parameter: '{param}'.", param
    )


def check_client_event(obj: dict[str, Any]) -> str:
    """The event's type, once its name and fields are known; SchemaError otherwise."""
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_EVENTS:
        # the code is the simulator's own (not in the references)
        raise SchemaError(
            "unknown_event_type", f"Unknown Live client event type: {kind!r}.", "type"
        )
    fields = CLIENT_EVENTS[kind]
    reject_unknown(obj, {"type", "event_id", *fields}, "")
    for name, required in fields.items():
        if required and name not in obj:
            raise _missing(name)
    if "audio" in fields:
        require_string(obj["audio"], "audio")
    if "content" in fields:
        require_string(obj["content"], "content")
        if obj["delegation_id"] is not None:
            require_string(obj["delegation_id"], "delegation_id")
    if "item" in fields:
        _object(obj["item"], "item")
    return kind


def check_format(value: Any, param: str) -> dict[str, Any]:
    fmt = _object(value, param)
    reject_unknown(fmt, {"type", "rate"}, param)
    kind = fmt.get("type")
    if kind not in ("audio/pcm", "audio/pcmu", "audio/pcma"):
        raise SchemaError(
            "invalid_value",
            f"Invalid value: {kind!r}. Supported values are: 'audio/pcm', 'audio/pcmu', "
            "and 'audio/pcma'.",
            f"{param}.type",
        )
    if "rate" not in fmt:
        raise _missing(f"{param}.rate")
    allowed = PCM_RATES if kind == "audio/pcm" else (G711_RATE,)
    if fmt["rate"] not in allowed or isinstance(fmt["rate"], bool):
        listed = " and ".join(str(r) for r in allowed)
        raise SchemaError(
            "invalid_value",
            f"Invalid value: {fmt['rate']!r}. Supported values are: {listed}.",
            f"{param}.rate",
        )
    return {"type": kind, "rate": fmt["rate"]}


def _check_audio(value: Any, param: str) -> dict[str, Any]:
    audio = _object(value, param)
    reject_unknown(audio, {"input", "output"}, param)
    out: dict[str, Any] = {
        "input": {"format": {"type": "audio/pcm", "rate": 24000}},
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
    }
    if "input" in audio:
        inp = _object(audio["input"], f"{param}.input")
        reject_unknown(inp, {"format"}, f"{param}.input")
        if "format" in inp:
            out["input"]["format"] = check_format(inp["format"], f"{param}.input.format")
    if "output" in audio:
        output = _object(audio["output"], f"{param}.output")
        reject_unknown(output, {"format", "voice"}, f"{param}.output")
        if "format" in output:
            out["output"]["format"] = check_format(output["format"], f"{param}.output.format")
        if "voice" in output:
            voice = require_string(output["voice"], f"{param}.output.voice")
            if not VOICE_RE.fullmatch(voice):
                raise SchemaError(
                    "invalid_value", f"Invalid voice: {voice!r}.", f"{param}.output.voice"
                )
            out["output"]["voice"] = voice
    return out


def check_delegation(value: Any, param: str) -> dict[str, Any]:
    """``{type: client[, acknowledgement_delay_ms]}`` or ``{type: responses, responses:
    {model, ...}}``; null/omitted means client delegation."""
    if value is None:
        return {"type": "client"}
    delegation = _object(value, param)
    kind = delegation.get("type")
    if kind == "client":
        reject_unknown(delegation, {"type", "acknowledgement_delay_ms"}, param)
        return copy.deepcopy(delegation)
    if kind != "responses":
        raise SchemaError(
            "invalid_value",
            f"Invalid value: {kind!r}. Supported values are: 'client' and 'responses'.",
            f"{param}.type",
        )
    reject_unknown(delegation, {"type", "responses"}, param)
    if "responses" not in delegation:
        raise _missing(f"{param}.responses")
    responses = _object(delegation["responses"], f"{param}.responses")
    reject_unknown(responses, RESPONSES_KEYS, f"{param}.responses")
    if "model" not in responses:
        raise _missing(f"{param}.responses.model")
    require_string(responses["model"], f"{param}.responses.model")
    tools = responses.get("tools", [])
    if not isinstance(tools, list):
        raise SchemaError(
            "invalid_type",
            f"Invalid type for '{param}.responses.tools': expected an array.",
            f"{param}.responses.tools",
        )
    for i, tool in enumerate(tools):
        where = f"{param}.responses.tools[{i}]"
        tool = _object(tool, where)
        if tool.get("type") == "function":
            reject_unknown(tool, {"type", "name", "description", "parameters", "strict"}, where)
            require_string(tool.get("name"), f"{where}.name")
    return copy.deepcopy(delegation)


def check_session_start(value: Any) -> dict[str, Any]:
    """The effective session of a ``session.start`` (server defaults filled in)."""
    session = _object(value, "session")
    reject_unknown(session, SESSION_KEYS, "session")
    if "model" not in session:
        raise _missing("session.model")
    out: dict[str, Any] = {
        "model": require_string(session["model"], "session.model"),
        "instructions": require_string(session.get("instructions", ""), "session.instructions"),
        "input": copy.deepcopy(session.get("input", [])),
        "audio": _check_audio(session.get("audio", {}), "session.audio"),
        "delegation": check_delegation(session.get("delegation"), "session.delegation"),
        "store": bool(session.get("store", False)),
    }
    return out


def check_session_update(current: dict[str, Any], value: Any) -> dict[str, Any]:
    """Merge a ``session.update``: startup-only fields are refused, the rest validated."""
    update = _object(value, "session")
    reject_unknown(update, SESSION_KEYS, "session")
    for key in STARTUP_ONLY:
        if key in update:
            raise SchemaError(
                "invalid_value",
                f"'session.{key}' is fixed at startup; start a new session to change it.",
                f"session.{key}",
            )
    if "instructions" in update:
        # "Add instructions with session.instructions.append" (live-conversations guide)
        raise SchemaError(
            "invalid_value",
            "Instructions cannot be replaced; use session.instructions.append.",
            "session.instructions",
        )
    merged = copy.deepcopy(current)
    if "delegation" in update:
        merged["delegation"] = check_delegation(update["delegation"], "session.delegation")
    return merged
