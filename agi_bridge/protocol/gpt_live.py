"""GPT-Live events, sans-I/O: client event builders and a server event parser.

What was verified, and where (stored references, Dec 2026):

- developers.openai.com/api/docs/guides/voice-websockets: connect to
  ``wss://api.openai.com/v1/live/sessions`` (no query), ``Authorization: Bearer``; send
  ``session.start`` first, wait for ``session.started`` before audio or commands.
- learn.microsoft.com .../azure/foundry/openai/gpt-live-reference and the @azure/ai-projects
  typed models (LiveServerEventType, LiveClientEvent*, LiveSessionAudioFormat*), and the
  OpenAPI-generated openai-client-base 0.16.0 (docs.rs) models: event names and fields.
  The session object is strict (unknown fields are refused). Audio formats on a WebSocket:
  ``{"type": "audio/pcmu", "rate": 8000}`` / ``audio/pcma`` (8000) / ``audio/pcm``
  (16000 | 24000). ``session.input_audio.append {audio}`` has no acknowledgement.
  ``session.output_audio.delta {delta}`` (start_ms/end_ms only on sideband connections).
  ``session.input_transcript.delta`` / ``session.output_transcript.delta`` {delta,
  start_ms, end_ms}: fragments, no "done" event, no turns. ``session.usage.updated
  {usage: {seconds}}``: cumulative seconds (not increments). ``session.delegation.created
  {delegation: {id, target, type}, offset_ms}``.
- Delegation (guides/live-delegation, Azure how-to gpt-live-delegation): ``client``
  delegation (default) hands work to the application, which answers with
  ``session.commentary.append {content, delegation_id}`` (spoken) or
  ``session.thinking.append`` (background context); ``responses`` delegation runs a
  Responses model; its function calls reach the client inside ``response.event
  {delegation_id, event}`` and are answered with ``response.item.create {item:
  function_call_output}`` + ``response.create`` (both refused without responses
  delegation). ``session.close`` -> ``session.closed {reason, session, usage}``.
- Billing (guides/voice-latency-cost): per second of session time, not rounded up.

Not found in the stored references, so not modelled: an event that marks the caller
interrupting the assistant, and any truncate command. GPT-Live is full duplex and the
server drives turns: the bridge cannot truncate; on the caller's speech it can only stop
playing what it buffered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from agi_bridge.protocol import fields

LIVE_PATH = "/v1/live/sessions"
DEFAULT_LIVE_MODEL = "gpt-live-1"
DELEGATION_TYPES = ("client", "responses")
AUDIO_FORMAT = {"type": "audio/pcmu", "rate": 8000}  # G.711 µ-law: the phone network


# ------------------------------------------------------------------------ client events


@dataclass(frozen=True, slots=True)
class LiveSessionConfig:
    """What the bridge asks of a GPT-Live session (``session.start``'s ``session``)."""

    model: str = DEFAULT_LIVE_MODEL
    instructions: str = ""
    voice: str = "marin"
    delegation: Literal["client", "responses"] = "client"
    # responses delegation: the backend model, its instructions and function tools
    backend_model: str = ""
    backend_instructions: str = ""
    tools: tuple[dict[str, Any], ...] = ()


def session_start(cfg: LiveSessionConfig, event_id: str = "event_start") -> dict[str, Any]:
    session: dict[str, Any] = {
        "model": cfg.model,
        "instructions": cfg.instructions,
        "audio": {
            "input": {"format": dict(AUDIO_FORMAT)},
            "output": {"format": dict(AUDIO_FORMAT), "voice": cfg.voice},
        },
    }
    if cfg.delegation == "responses":
        responses: dict[str, Any] = {"model": cfg.backend_model}
        if cfg.backend_instructions:
            responses["instructions"] = cfg.backend_instructions
        if cfg.tools:
            responses["tools"] = list(cfg.tools)
            responses["tool_choice"] = "auto"
        session["delegation"] = {"type": "responses", "responses": responses}
    else:
        session["delegation"] = {"type": "client"}
    return {"type": "session.start", "event_id": event_id, "session": session}


def input_audio_append(ulaw: bytes) -> dict[str, Any]:
    return {"type": "session.input_audio.append", "audio": fields.base64_text(ulaw)}


# The three "append" commands take ``content`` (a plain string, at most 500 tokens) and a
# ``delegation_id`` that is required but nullable (null: general session context).


def commentary_append(content: str, delegation_id: str | None = None) -> dict[str, Any]:
    """A result the live model should tell the caller (e.g. a client delegation's)."""
    return {"type": "session.commentary.append", "content": content, "delegation_id": delegation_id}


def thinking_append(content: str, delegation_id: str | None = None) -> dict[str, Any]:
    """Background context for the live model, not a request to speak."""
    return {"type": "session.thinking.append", "content": content, "delegation_id": delegation_id}


def instructions_append(content: str, delegation_id: str | None = None) -> dict[str, Any]:
    """More developer instructions (GPT-Live cannot replace the startup instructions)."""
    return {
        "type": "session.instructions.append",
        "content": content,
        "delegation_id": delegation_id,
    }


def function_call_output(call_id: str, output: str) -> dict[str, Any]:
    """A tool result for the Responses backend (responses delegation only)."""
    return {
        "type": "response.item.create",
        "item": {"type": "function_call_output", "call_id": call_id, "output": output},
    }


def response_create() -> dict[str, Any]:
    """Let the Responses backend continue after tool results (responses delegation)."""
    return {"type": "response.create"}


def session_close() -> dict[str, Any]:
    return {"type": "session.close"}


def encode(event: dict[str, Any]) -> str:
    return fields.encode_event(event)


# ------------------------------------------------------------------------ server events


@dataclass(frozen=True, slots=True)
class SessionStarted:
    session: dict[str, Any]
    session_id: str


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    session: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutputAudio:
    audio: bytes  # decoded: the session's format (µ-law as the bridge asks)


@dataclass(frozen=True, slots=True)
class InputTranscript:
    delta: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class OutputTranscript:
    delta: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class DelegationCreated:
    delegation_id: str
    target: str
    offset_ms: int


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """A client-actionable function call from the Responses backend (``response.event``
    carrying ``response.output_item.done`` with a ``function_call`` item)."""

    call_id: str
    name: str
    arguments: str
    delegation_id: str = ""


@dataclass(frozen=True, slots=True)
class ResponseEvent:
    """Any other Responses backend event (``response.event``), kept as given."""

    event: dict[str, Any]
    delegation_id: str = ""


@dataclass(frozen=True, slots=True)
class UsageUpdated:
    seconds: float  # cumulative for the session: a total, do not sum


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """The terminal event: ``reason`` is close_requested | expired | content |
    remote_hangup | connection_lost; ``seconds`` the final cumulative usage."""

    reason: str
    seconds: float


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    type: str
    code: str
    message: str
    client_event_id: str


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    type: str
    raw: dict[str, Any] = field(default_factory=dict)


ServerEvent = (
    SessionStarted
    | SessionUpdated
    | OutputAudio
    | InputTranscript
    | OutputTranscript
    | DelegationCreated
    | FunctionCall
    | ResponseEvent
    | UsageUpdated
    | SessionClosed
    | ErrorEvent
    | UnknownEvent
)


_s, _i, _d = fields.text, fields.integer, fields.mapping


def _response_event(obj: dict[str, Any]) -> ServerEvent:
    # {type: "response.event", delegation_id, event: <a Responses streaming event>}
    inner = _d(obj, "event")
    item = _d(inner, "item")
    delegation_id = _s(obj, "delegation_id")
    if inner.get("type") == "response.output_item.done" and item.get("type") == "function_call":
        return FunctionCall(
            _s(item, "call_id"), _s(item, "name"), _s(item, "arguments"), delegation_id
        )
    return ResponseEvent(inner, delegation_id)


def _seconds(obj: dict[str, Any]) -> float:
    seconds = _d(obj, "usage").get("seconds")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return 0.0
    return float(seconds)


def parse_server_event(message: str | bytes) -> ServerEvent:
    """Parse one websocket message from a GPT-Live session."""
    obj, kind = fields.event_object(message, "GPT-Live")
    match kind:
        case "session.output_audio.delta":
            audio = fields.audio(obj, "delta", kind)
            return OutputAudio(audio)
        case "session.input_transcript.delta":
            return InputTranscript(_s(obj, "delta"), _i(obj, "start_ms"), _i(obj, "end_ms"))
        case "session.output_transcript.delta":
            return OutputTranscript(_s(obj, "delta"), _i(obj, "start_ms"), _i(obj, "end_ms"))
        case "session.started":
            session = _d(obj, "session")
            return SessionStarted(session, _s(session, "id"))
        case "session.updated":
            return SessionUpdated(_d(obj, "session"))
        case "session.delegation.created":
            delegation = _d(obj, "delegation")
            return DelegationCreated(
                _s(delegation, "id"), _s(delegation, "target"), _i(obj, "offset_ms")
            )
        case "response.event":
            return _response_event(obj)
        case "session.usage.updated":
            return UsageUpdated(_seconds(obj))
        case "session.closed":
            return SessionClosed(_s(obj, "reason"), _seconds(obj))
        case "error":
            err = _d(obj, "error")
            return ErrorEvent(
                _s(err, "type"),
                _s(err, "code"),
                _s(err, "message"),
                _s(err, "client_event_id") or _s(obj, "client_event_id"),
            )
        case _:
            return UnknownEvent(kind, obj)
