"""The GA session object: its defaults, and ``session.update`` validated like the service.

The real service rejects beta-shaped fields (``modalities``, ``input_audio_format``,
``temperature``, a top-level ``voice``...) with ``unknown_parameter``; a bridge that still
sends them must fail here exactly as it would against the real API. Pure functions: no
I/O, errors are raised as ``SchemaError`` and turned into ``error`` events by the caller.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Collection
from typing import Any

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")
EAGERNESS = ("low", "medium", "high", "auto")
# openai-python types/realtime/realtime_reasoning_effort.py and realtime_truncation.py
REASONING_EFFORTS = ("minimal", "low", "medium", "high", "xhigh")
TRUNCATIONS = ("auto", "disabled")


class SchemaError(Exception):
    """An ``invalid_request_error`` with the code/message/param the real API would use."""

    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def server_vad_defaults() -> dict[str, Any]:
    return {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }


def semantic_vad_defaults() -> dict[str, Any]:
    return {
        "type": "semantic_vad",
        "eagerness": "auto",
        "create_response": True,
        "interrupt_response": True,
    }


def default_session(session_id: str, model: str, max_session_ms: int) -> dict[str, Any]:
    """What ``session.created`` carries: the GA defaults (pcm 24 kHz both ways)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "You are a helpful, witty, and friendly AI.",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "include": None,
        "expires_at": int(time.time() + max_session_ms / 1000),
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": server_vad_defaults(),
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "alloy",
                "speed": 1.0,
            },
        },
    }


# ----------------------------------------------------------------------- validation

# Fields the beta accepted at the top of the session; GA moved or removed them.
BETA_FIELDS = (
    "modalities",
    "input_audio_format",
    "output_audio_format",
    "input_audio_transcription",
    "input_audio_noise_reduction",
    "temperature",
    "voice",
    "turn_detection",
    "speed",
)
_TOP = frozenset(
    {
        "type",
        "model",
        "instructions",
        "output_modalities",
        "audio",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "truncation",
        "tracing",
        "prompt",
        "include",
        "reasoning",
        "parallel_tool_calls",
    }
)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _expect(value: Any, kind: type | tuple[type, ...], what: str, param: str) -> None:
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _as_tuple(kind))
    if not ok:
        raise SchemaError(
            "invalid_type",
            f"Invalid type for '{param}': expected {what}, but got {_type_name(value)} instead.",
            param,
        )


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _unknown(obj: dict[str, Any], allowed: Collection[str], prefix: str) -> None:
    for key in obj:
        if key not in allowed:
            raise SchemaError(
                "unknown_parameter", f"Unknown parameter: '{prefix}.{key}'.", f"{prefix}.{key}"
            )


def _choice(value: Any, choices: tuple[str, ...], param: str) -> None:
    if value not in choices:
        listed = ", ".join(f"'{c}'" for c in choices[:-1]) + f", and '{choices[-1]}'"
        raise SchemaError(
            "invalid_value",
            f"Invalid value: {value!r}. Supported values are: {listed}.",
            param,
        )


def _number(value: Any, lo: float, hi: float, param: str, *, integer: bool = False) -> None:
    _expect(value, int if integer else (int, float), "an integer" if integer else "a number", param)
    if value < lo:
        raise SchemaError(
            "integer_below_min_value" if integer else "decimal_below_min_value",
            f"Invalid '{param}': expected a value >= {lo}, but got {value} instead.",
            param,
        )
    if value > hi:
        raise SchemaError(
            "integer_above_max_value" if integer else "decimal_above_max_value",
            f"Invalid '{param}': expected a value <= {hi}, but got {value} instead.",
            param,
        )


def check_format(fmt: Any, param: str) -> dict[str, Any]:
    _expect(fmt, dict, "an object", param)
    _unknown(fmt, {"type", "rate"}, param)
    _choice(fmt.get("type"), FORMATS, f"{param}.type")
    if fmt["type"] == "audio/pcm":
        rate = fmt.get("rate", 24000)
        if rate != 24000:
            raise SchemaError(
                "invalid_value",
                f"Invalid value: {rate!r}. Supported values are: 24000.",
                f"{param}.rate",
            )
        return {"type": "audio/pcm", "rate": 24000}
    if "rate" in fmt:
        raise SchemaError(
            "unknown_parameter", f"Unknown parameter: '{param}.rate'.", f"{param}.rate"
        )
    return {"type": fmt["type"]}


def check_turn_detection(td: Any, param: str) -> dict[str, Any] | None:
    if td is None:
        return None
    _expect(td, dict, "an object", param)
    kind = td.get("type")
    _choice(kind, ("server_vad", "semantic_vad"), f"{param}.type")
    out = server_vad_defaults() if kind == "server_vad" else semantic_vad_defaults()
    _unknown(td, out, param)
    checks: dict[str, Callable[[Any, str], None]] = {
        "threshold": lambda v, p: _number(v, 0.0, 1.0, p),
        "prefix_padding_ms": lambda v, p: _number(v, 0, 10_000, p, integer=True),
        "silence_duration_ms": lambda v, p: _number(v, 0, 10_000, p, integer=True),
        "idle_timeout_ms": lambda v, p: (
            None if v is None else _number(v, 5000, 30_000, p, integer=True)
        ),
        "create_response": lambda v, p: _expect(v, bool, "a boolean", p),
        "interrupt_response": lambda v, p: _expect(v, bool, "a boolean", p),
        "eagerness": lambda v, p: _choice(v, EAGERNESS, p),
    }
    for key, value in td.items():
        if key != "type":
            checks[key](value, f"{param}.{key}")
            out[key] = value
    return out


def _check_input(inp: Any, param: str, merged: dict[str, Any]) -> None:
    _expect(inp, dict, "an object", param)
    _unknown(inp, {"format", "transcription", "noise_reduction", "turn_detection"}, param)
    if "format" in inp:
        merged["format"] = check_format(inp["format"], f"{param}.format")
    if "turn_detection" in inp:
        merged["turn_detection"] = check_turn_detection(
            inp["turn_detection"], f"{param}.turn_detection"
        )
    if "transcription" in inp:
        tr = inp["transcription"]
        if tr is not None:
            _expect(tr, dict, "an object", f"{param}.transcription")
            _unknown(tr, {"model", "language", "prompt"}, f"{param}.transcription")
            for key in ("model", "language", "prompt"):
                if key in tr:
                    _expect(tr[key], str, "a string", f"{param}.transcription.{key}")
        merged["transcription"] = copy.deepcopy(tr)
    if "noise_reduction" in inp:
        nr = inp["noise_reduction"]
        if nr is not None:
            _expect(nr, dict, "an object", f"{param}.noise_reduction")
            _unknown(nr, {"type"}, f"{param}.noise_reduction")
            _choice(nr.get("type"), ("near_field", "far_field"), f"{param}.noise_reduction.type")
        merged["noise_reduction"] = copy.deepcopy(nr)


def _check_output(out: Any, param: str, merged: dict[str, Any], has_audio: bool) -> None:
    _expect(out, dict, "an object", param)
    _unknown(out, {"format", "voice", "speed"}, param)
    if "format" in out:
        merged["format"] = check_format(out["format"], f"{param}.format")
    if "voice" in out:
        _expect(out["voice"], str, "a string", f"{param}.voice")
        _choice(out["voice"], VOICES, f"{param}.voice")
        if has_audio and out["voice"] != merged.get("voice"):
            # The real service refuses a voice change once the assistant has spoken.
            raise SchemaError(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                f"{param}.voice",
            )
        merged["voice"] = out["voice"]
    if "speed" in out:
        _number(out["speed"], 0.25, 1.5, f"{param}.speed")
        merged["speed"] = out["speed"]


def check_tools(tools: Any, param: str) -> list[dict[str, Any]]:
    _expect(tools, list, "an array", param)
    for i, tool in enumerate(tools):
        where = f"{param}[{i}]"
        _expect(tool, dict, "an object", where)
        _choice(tool.get("type"), ("function", "mcp"), f"{where}.type")
        if tool["type"] == "function":
            _unknown(tool, {"type", "name", "description", "parameters"}, where)
            _expect(tool.get("name"), str, "a string", f"{where}.name")
            if "parameters" in tool:
                _expect(tool["parameters"], dict, "an object", f"{where}.parameters")
    return copy.deepcopy(tools)


def check_reasoning(value: Any, param: str) -> dict[str, Any]:
    """``{"effort": ...}`` (types/realtime/realtime_reasoning_param.py)."""
    _expect(value, dict, "an object", param)
    _unknown(value, {"effort"}, param)
    if "effort" in value:
        _choice(value["effort"], REASONING_EFFORTS, f"{param}.effort")
    return copy.deepcopy(value)


def check_truncation(value: Any, param: str) -> Any:
    """``"auto"`` | ``"disabled"`` | ``{"type": "retention_ratio", "retention_ratio": 0..1,
    "token_limits": {"post_instructions": int}}`` (realtime_truncation_retention_ratio.py)."""
    if isinstance(value, str):
        _choice(value, TRUNCATIONS, param)
        return value
    _expect(value, dict, "a string or an object", param)
    _unknown(value, {"type", "retention_ratio", "token_limits"}, param)
    _choice(value.get("type"), ("retention_ratio",), f"{param}.type")
    if "retention_ratio" not in value:
        raise SchemaError(
            "missing_required_parameter",
            f"Missing required parameter: '{param}.retention_ratio'.",
            f"{param}.retention_ratio",
        )
    _number(value["retention_ratio"], 0.0, 1.0, f"{param}.retention_ratio")
    limits = value.get("token_limits")
    if limits is not None:
        _expect(limits, dict, "an object", f"{param}.token_limits")
        _unknown(limits, {"post_instructions"}, f"{param}.token_limits")
        if "post_instructions" in limits:
            _number(
                limits["post_instructions"],
                1,
                10**9,
                f"{param}.token_limits.post_instructions",
                integer=True,
            )
    return copy.deepcopy(value)


def check_max_output_tokens(value: Any, param: str) -> int | str:
    if value == "inf":
        return "inf"
    _number(value, 1, 4096, param, integer=True)
    return int(value)


def check_output_modalities(value: Any, param: str) -> list[str]:
    _expect(value, list, "an array", param)
    if len(value) != 1:
        raise SchemaError(
            "invalid_value",
            "Invalid value: output_modalities must be exactly one of ['audio'] or ['text'].",
            param,
        )
    _choice(value[0], ("audio", "text"), f"{param}[0]")
    return list(value)


def check_tool_choice(value: Any, param: str) -> Any:
    if isinstance(value, str):
        _choice(value, ("auto", "none", "required"), param)
        return value
    _expect(value, dict, "a string or an object", param)
    _unknown(value, {"type", "name", "server_label"}, param)
    return copy.deepcopy(value)


def apply_session_update(
    current: dict[str, Any], update: Any, *, has_assistant_audio: bool
) -> dict[str, Any]:
    """Validate ``update`` (the ``session`` of a ``session.update``); return the merged session.

    Nothing is applied unless everything validates, like the real service.
    """
    _expect(update, dict, "an object", "session")
    for key in BETA_FIELDS:  # named first so a beta-shaped client gets the telling error
        if key in update:
            raise SchemaError(
                "unknown_parameter", f"Unknown parameter: 'session.{key}'.", f"session.{key}"
            )
    _unknown(update, _TOP, "session")
    if "type" not in update:
        raise SchemaError(
            "missing_required_parameter",
            "Missing required parameter: 'session.type'.",
            "session.type",
        )
    if update["type"] != "realtime":
        _choice(update["type"], ("realtime",), "session.type")
    merged = copy.deepcopy(current)
    if "model" in update:
        _expect(update["model"], str, "a string", "session.model")
        merged["model"] = update["model"]
    if "instructions" in update:
        _expect(update["instructions"], str, "a string", "session.instructions")
        merged["instructions"] = update["instructions"]
    if "output_modalities" in update:
        merged["output_modalities"] = check_output_modalities(
            update["output_modalities"], "session.output_modalities"
        )
    if "tools" in update:
        merged["tools"] = check_tools(update["tools"], "session.tools")
    if "tool_choice" in update:
        merged["tool_choice"] = check_tool_choice(update["tool_choice"], "session.tool_choice")
    if "max_output_tokens" in update:
        merged["max_output_tokens"] = check_max_output_tokens(
            update["max_output_tokens"], "session.max_output_tokens"
        )
    if "reasoning" in update:
        merged["reasoning"] = check_reasoning(update["reasoning"], "session.reasoning")
    if "parallel_tool_calls" in update:
        _expect(update["parallel_tool_calls"], bool, "a boolean", "session.parallel_tool_calls")
        merged["parallel_tool_calls"] = update["parallel_tool_calls"]
    if "truncation" in update:
        merged["truncation"] = check_truncation(update["truncation"], "session.truncation")
    for key in ("tracing", "prompt", "include"):
        if key in update:  # accepted as given: the simulator has no use for them
            merged[key] = copy.deepcopy(update[key])
    if "audio" in update:
        audio = update["audio"]
        _expect(audio, dict, "an object", "session.audio")
        _unknown(audio, {"input", "output"}, "session.audio")
        if "input" in audio:
            _check_input(audio["input"], "session.audio.input", merged["audio"]["input"])
        if "output" in audio:
            _check_output(
                audio["output"],
                "session.audio.output",
                merged["audio"]["output"],
                has_assistant_audio,
            )
    return merged


# ``response.create``'s ``response`` object (GA): per-response overrides of the session.
_RESPONSE_KEYS = frozenset(
    {
        "instructions",
        "conversation",
        "output_modalities",
        "tools",
        "tool_choice",
        "metadata",
        "input",
        "max_output_tokens",
        "audio",
        "prompt",
    }
)


def check_response(resp: Any, session: dict[str, Any]) -> dict[str, Any]:
    """Validate ``response.create``'s ``response``; return the effective settings:
    ``format`` (dict), ``voice``, ``modality``, ``in_conversation``, ``max_output_tokens``,
    ``instructions``, ``metadata``."""
    if resp is None:
        resp = {}
    _expect(resp, dict, "an object", "response")
    _unknown(resp, _RESPONSE_KEYS, "response")
    conversation = resp.get("conversation", "auto")
    _choice(conversation, ("auto", "none"), "response.conversation")
    out = session["audio"]["output"]
    effective: dict[str, Any] = {
        "format": out["format"],
        "voice": out["voice"],
        "modality": session["output_modalities"][0],
        "in_conversation": conversation == "auto",
        "max_output_tokens": session["max_output_tokens"],
        "instructions": session["instructions"],
        "metadata": resp.get("metadata"),
    }
    if "instructions" in resp:
        _expect(resp["instructions"], str, "a string", "response.instructions")
        effective["instructions"] = resp["instructions"]
    if "output_modalities" in resp:
        effective["modality"] = check_output_modalities(
            resp["output_modalities"], "response.output_modalities"
        )[0]
    if "max_output_tokens" in resp:
        effective["max_output_tokens"] = check_max_output_tokens(
            resp["max_output_tokens"], "response.max_output_tokens"
        )
    if "tools" in resp:
        check_tools(resp["tools"], "response.tools")
    if "tool_choice" in resp:
        check_tool_choice(resp["tool_choice"], "response.tool_choice")
    if "input" in resp:
        _expect(resp["input"], list, "an array", "response.input")
    if "audio" in resp:
        audio = resp["audio"]
        _expect(audio, dict, "an object", "response.audio")
        _unknown(audio, {"output"}, "response.audio")
        output = audio.get("output", {})
        _expect(output, dict, "an object", "response.audio.output")
        _unknown(output, {"format", "voice"}, "response.audio.output")
        if "format" in output:
            effective["format"] = check_format(output["format"], "response.audio.output.format")
        if "voice" in output:
            _choice(output["voice"], VOICES, "response.audio.output.voice")
            effective["voice"] = output["voice"]
    return effective
