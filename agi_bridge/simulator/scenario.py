"""What the simulated model says and how the simulated service misbehaves.

A ``Scenario`` is plain data so that a test can build one in Python and the CLI can load
one from YAML (``Scenario.from_dict`` / ``Scenario.from_yaml``). Turns are consumed in
order, one per response; when they run out every response says ``default_reply``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from agi_bridge.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One ``function_call`` output item the scripted model emits."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    call_id: str | None = None  # None: a fresh "call_..." id per emission


@dataclass(frozen=True, slots=True)
class Turn:
    """One scripted response.

    ``text`` is spoken (an assistant audio message item); ``{output}`` in it is replaced by
    the last ``function_call_output`` received and ``{output.KEY}`` by a field of it when
    that output is a JSON object, so a turn that follows a tool call can "read" the result.
    ``caller_text`` is reported as the transcript of the caller's item that led to this
    turn (otherwise "[caller spoke for 1.4 s]").
    """

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    caller_text: str | None = None


DEFAULT_MAX_SESSION_MS = 60 * 60 * 1000  # the real service's hard limit


@dataclass(slots=True)
class Scenario:
    """Script and fault injection for every session opened while it is current."""

    greeting: str | None = None
    turns: list[Turn] = field(default_factory=list)
    default_reply: str = "I heard you."
    # Audio pacing: the real service sends audio faster than real time, in bursts.
    speed: float = 4.0  # audio ms per wall ms; math.inf = no pacing at all
    ms_per_char: int = 65
    chunk_ms: int = 100
    burst_chunks: int = 3  # chunks sent back to back before pacing catches up
    response_latency_ms: int = 150  # wall time from response.created to the first audio
    vad_threshold_dbfs: float = -40.0  # energy VAD level for server_vad threshold 0.5
    api_key: str | None = None  # None: any key is accepted
    max_session_ms: int = DEFAULT_MAX_SESSION_MS
    # Fault injection (all times are wall ms since the websocket opened).
    refuse_connect: int | None = None  # HTTP status for the handshake, e.g. 500 or 503
    refuse_connect_times: int = 0  # refuse this many handshakes, then accept; 0 = always
    close_after_ms: int | None = None
    close_code: int = 1011
    error_after_ms: int | None = None
    error_code: str = "server_error"  # sent as an error event, then the socket closes
    delay_session_created_ms: int = 0
    send_unknown_events: bool = False
    malformed_after_ms: int | None = None
    stall_after_ms: int | None = None  # then silent: nothing sent, the socket stays open

    def __post_init__(self) -> None:
        # Validate once here so that a bad script fails at load, not mid-call.
        if not self.speed > 0:
            raise ConfigError("must be > 0 (use inf for no pacing)", key="speed")
        for name in ("ms_per_char", "chunk_ms", "burst_chunks", "max_session_ms"):
            if getattr(self, name) <= 0:
                raise ConfigError("must be > 0", key=name)
        for name in ("response_latency_ms", "delay_session_created_ms", "refuse_connect_times"):
            if getattr(self, name) < 0:
                raise ConfigError("must be >= 0", key=name)
        if self.refuse_connect is not None and not 400 <= self.refuse_connect <= 599:
            raise ConfigError("must be an HTTP error status (400-599)", key="refuse_connect")

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, file: str = "") -> Scenario:
        """Build from plain data (e.g. parsed YAML); unknown keys are errors."""
        if not isinstance(data, dict):
            raise ConfigError("a scenario must be a mapping", file=file)
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ConfigError(
                    f"unknown scenario key (known: {sorted(known)})", file=file, key=key
                )
            if key == "turns":
                if not isinstance(value, list):
                    raise ConfigError("must be a list", file=file, key=key)
                kwargs[key] = [_turn(t, file, f"turns[{i}]") for i, t in enumerate(value)]
            elif key == "speed" and value in ("inf", "max"):
                kwargs[key] = math.inf
            else:
                kwargs[key] = _typed(key, value, file)
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(exc.reason, file=file, key=exc.key) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> Scenario:
        text = Path(path).read_text(encoding="utf-8")
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"not valid YAML: {exc}", file=str(path)) from exc
        return cls.from_dict(data, file=str(path))


# Expected Python types per scalar field, checked at load so a YAML typo names its key.
_TYPES: dict[str, tuple[type, ...]] = {
    "greeting": (str, type(None)),
    "default_reply": (str,),
    "speed": (int, float),
    "vad_threshold_dbfs": (int, float),
    "api_key": (str, type(None)),
    "error_code": (str,),
    "send_unknown_events": (bool,),
    "refuse_connect": (int, type(None)),
    "close_after_ms": (int, type(None)),
    "error_after_ms": (int, type(None)),
    "malformed_after_ms": (int, type(None)),
    "stall_after_ms": (int, type(None)),
}


def _typed(key: str, value: Any, file: str) -> Any:
    expected = _TYPES.get(key, (int,))
    bad_bool = isinstance(value, bool) and bool not in expected
    if bad_bool or not isinstance(value, expected):
        names = " or ".join("null" if t is type(None) else t.__name__ for t in expected)
        raise ConfigError(f"expected {names}, got {value!r}", file=file, key=key)
    if float in expected and isinstance(value, int | float):
        return float(value)
    return value


def _turn(data: Any, file: str, where: str) -> Turn:
    if isinstance(data, str):  # shorthand: a turn that only speaks
        return Turn(text=data)
    if not isinstance(data, dict):
        raise ConfigError("a turn is a string or a mapping", file=file, key=where)
    unknown = set(data) - {"text", "tool_calls", "caller_text"}
    if unknown:
        raise ConfigError(f"unknown turn keys {sorted(unknown)}", file=file, key=where)
    text = data.get("text", "")
    caller_text = data.get("caller_text")
    if not isinstance(text, str) or not isinstance(caller_text, str | None):
        raise ConfigError("text and caller_text must be strings", file=file, key=where)
    calls = data.get("tool_calls", [])
    if not isinstance(calls, list):
        raise ConfigError("must be a list", file=file, key=f"{where}.tool_calls")
    return Turn(
        text,
        tuple(_tool(c, file, f"{where}.tool_calls[{i}]") for i, c in enumerate(calls)),
        caller_text,
    )


def _tool(data: Any, file: str, where: str) -> ToolCall:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ConfigError("a tool call needs a string 'name'", file=file, key=where)
    unknown = set(data) - {"name", "arguments", "call_id"}
    if unknown:
        raise ConfigError(f"unknown tool call keys {sorted(unknown)}", file=file, key=where)
    arguments = data.get("arguments", {})
    call_id = data.get("call_id")
    if not isinstance(arguments, dict) or not isinstance(call_id, str | None):
        raise ConfigError("arguments must be a mapping, call_id a string", file=file, key=where)
    return ToolCall(data["name"], arguments, call_id)


def demo_scenario() -> Scenario:
    """What ``agi-bridge simulate`` says by default: honest about being a simulator."""
    return Scenario(
        greeting=(
            "Hello! You are talking to the agi bridge local simulator. "
            "No OpenAI account is involved: I answer with scripted replies in a synthetic voice. "
            "Say something, then pause, and I will answer."
        ),
        turns=[
            Turn("I heard you. I notice speech by its loudness, so I answer whenever you pause."),
            Turn(
                "You can interrupt me at any time. Try it now, while I am still talking, "
                "and I will stop and listen."
            ),
            Turn(
                "Everything you hear is generated on this machine, so it works without "
                "a network connection."
            ),
        ],
        default_reply="I heard you. This is still the local simulator.",
    )
