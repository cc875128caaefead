"""OpenAI Realtime GA events, sans-I/O: client event builders and a server event parser.

Only the GA protocol (REFERENCE §5). Builders return plain dicts (``encode()`` makes the
JSON text); the parser turns a server message into a typed event. Event types this module
does not model become ``UnknownEvent``: the service adds new ones over time and a bridge
must keep going (ARCHITECTURE rule 7). The session object (``SessionConfig``,
``session_update``) lives in realtime_session.py and is re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from agi_bridge.protocol import fields
from agi_bridge.protocol.realtime_session import (
    AUDIO_FORMAT as AUDIO_FORMAT,
)
from agi_bridge.protocol.realtime_session import (
    EAGERNESS as EAGERNESS,
)
from agi_bridge.protocol.realtime_session import (
    NOISE_REDUCTION as NOISE_REDUCTION,
)
from agi_bridge.protocol.realtime_session import (
    REASONING_EFFORTS as REASONING_EFFORTS,
)
from agi_bridge.protocol.realtime_session import (
    TRUNCATIONS as TRUNCATIONS,
)
from agi_bridge.protocol.realtime_session import (
    VOICE_NAME_RE as VOICE_NAME_RE,
)
from agi_bridge.protocol.realtime_session import (
    VOICES as VOICES,
)
from agi_bridge.protocol.realtime_session import (
    SemanticVad as SemanticVad,
)
from agi_bridge.protocol.realtime_session import (
    ServerVad as ServerVad,
)
from agi_bridge.protocol.realtime_session import (
    SessionConfig as SessionConfig,
)
from agi_bridge.protocol.realtime_session import (
    TurnDetection as TurnDetection,
)
from agi_bridge.protocol.realtime_session import (
    session_update as session_update,
)

# --------------------------------------------------------------------- client events


def input_audio_append(ulaw: bytes) -> dict[str, Any]:
    return {"type": "input_audio_buffer.append", "audio": fields.base64_text(ulaw)}


def input_audio_commit() -> dict[str, Any]:
    return {"type": "input_audio_buffer.commit"}


def response_create(instructions: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "response.create"}
    if instructions:
        event["response"] = {"instructions": instructions}
    return event


def response_cancel() -> dict[str, Any]:
    return {"type": "response.cancel"}


def item_truncate(item_id: str, audio_end_ms: int) -> dict[str, Any]:
    return {
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": audio_end_ms,
    }


def function_call_output(call_id: str, output: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": call_id, "output": output},
    }


def user_text(text: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        },
    }


def system_text(text: str) -> dict[str, Any]:
    """A system message item (e.g. an operator's note to the model mid-call)."""
    return {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "system",
            "content": [{"type": "input_text", "text": text}],
        },
    }


def encode(event: dict[str, Any]) -> str:
    return fields.encode_event(event)


# --------------------------------------------------------------------- server events


@dataclass(frozen=True, slots=True)
class SessionCreated:
    session: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    session: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    item_id: str
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class InputTimeout:
    """``input_audio_buffer.timeout_triggered``: server VAD heard no speech for
    ``idle_timeout_ms`` after the last response was played (openai-python
    types/realtime/input_audio_buffer_timeout_triggered.py). The service then commits the
    silent audio as an input item (``input_audio_buffer.committed``) and, per that
    docstring, generates a response itself: the bridge must not ``response.create`` again."""

    item_id: str
    audio_start_ms: int
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class InputCommitted:
    item_id: str


@dataclass(frozen=True, slots=True)
class TranscriptionDelta:
    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class TranscriptionUsage:
    """Usage of one input transcription, billed at the ASR model's price (openai-python
    conversation_item_input_audio_transcription_completed_event.py): either tokens
    (``input_tokens`` with audio/text detail, ``output_tokens``) or a duration."""

    kind: Literal["tokens", "duration", ""] = ""
    seconds: float = 0.0
    audio_tokens: int = 0
    text_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class TranscriptionCompleted:
    item_id: str
    transcript: str
    usage: TranscriptionUsage = TranscriptionUsage()


@dataclass(frozen=True, slots=True)
class TranscriptionFailed:
    item_id: str
    message: str


@dataclass(frozen=True, slots=True)
class ResponseCreated:
    response_id: str


@dataclass(frozen=True, slots=True)
class AudioDelta:
    response_id: str
    item_id: str
    audio: bytes  # decoded from base64: µ-law, as negotiated


@dataclass(frozen=True, slots=True)
class AudioDone:
    response_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class AudioTranscriptDelta:
    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class AudioTranscriptDone:
    item_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """A complete function call (from ``function_call_arguments.done`` or an output item)."""

    call_id: str
    name: str
    arguments: str
    item_id: str = ""
    response_id: str = ""  # lets the bridge ignore calls of a response the caller cut off


@dataclass(frozen=True, slots=True)
class ResponseDone:
    response_id: str
    status: str
    status_details: dict[str, Any] | None
    output: list[dict[str, Any]]
    usage: dict[str, Any]

    def function_calls(self) -> list[FunctionCall]:
        return [
            FunctionCall(
                str(item.get("call_id", "")),
                str(item.get("name", "")),
                str(item.get("arguments", "")),
                str(item.get("id", "")),
                self.response_id,
            )
            for item in self.output
            if item.get("type") == "function_call"
        ]


@dataclass(frozen=True, slots=True)
class ItemTruncated:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    type: str
    code: str
    message: str
    param: str
    event_id: str


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """Any event type not modelled here (logged at debug, never fatal)."""

    type: str
    raw: dict[str, Any]


ServerEvent = (
    SessionCreated
    | SessionUpdated
    | SpeechStarted
    | SpeechStopped
    | InputCommitted
    | InputTimeout
    | TranscriptionDelta
    | TranscriptionCompleted
    | TranscriptionFailed
    | ResponseCreated
    | AudioDelta
    | AudioDone
    | AudioTranscriptDelta
    | AudioTranscriptDone
    | FunctionCall
    | ResponseDone
    | ItemTruncated
    | ErrorEvent
    | UnknownEvent
)

# Errors after which the session cannot go on (the call ends and the dialplan falls back).
FATAL_ERROR_CODES = frozenset(
    {"session_expired", "invalid_api_key", "insufficient_quota", "model_not_found"}
)
# ...except these, where a new session can carry the call on.
RESUMABLE_ERROR_CODES = frozenset({"session_expired"})


_s, _i, _d = fields.text, fields.integer, fields.mapping


def _transcription_usage(usage: dict[str, Any]) -> TranscriptionUsage:
    if usage.get("type") == "duration":
        seconds = usage.get("seconds")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
            seconds = 0.0
        return TranscriptionUsage("duration", seconds=float(seconds))
    if usage.get("type") == "tokens":
        details = _d(usage, "input_token_details")
        input_tokens = _i(usage, "input_tokens")
        audio = _i(details, "audio_tokens") if "audio_tokens" in details else input_tokens
        return TranscriptionUsage(
            "tokens",
            audio_tokens=audio,
            text_tokens=_i(details, "text_tokens"),
            output_tokens=_i(usage, "output_tokens"),
        )
    return TranscriptionUsage()


def parse_server_event(message: str | bytes) -> ServerEvent:
    """Parse one websocket message from the Realtime service."""
    obj, kind = fields.event_object(message, "Realtime")
    match kind:
        case "response.output_audio.delta":
            audio = fields.audio(obj, "delta", kind)
            return AudioDelta(_s(obj, "response_id"), _s(obj, "item_id"), audio)
        case "input_audio_buffer.speech_started":
            return SpeechStarted(_s(obj, "item_id"), _i(obj, "audio_start_ms"))
        case "input_audio_buffer.speech_stopped":
            return SpeechStopped(_s(obj, "item_id"), _i(obj, "audio_end_ms"))
        case "input_audio_buffer.committed":
            return InputCommitted(_s(obj, "item_id"))
        case "conversation.item.input_audio_transcription.delta":
            return TranscriptionDelta(_s(obj, "item_id"), _s(obj, "delta"))
        case "conversation.item.input_audio_transcription.completed":
            return TranscriptionCompleted(
                _s(obj, "item_id"), _s(obj, "transcript"), _transcription_usage(_d(obj, "usage"))
            )
        case "input_audio_buffer.timeout_triggered":
            return InputTimeout(
                _s(obj, "item_id"), _i(obj, "audio_start_ms"), _i(obj, "audio_end_ms")
            )
        case "conversation.item.input_audio_transcription.failed":
            return TranscriptionFailed(_s(obj, "item_id"), _s(_d(obj, "error"), "message"))
        case "response.created":
            return ResponseCreated(_s(_d(obj, "response"), "id"))
        case "response.output_audio.done":
            return AudioDone(_s(obj, "response_id"), _s(obj, "item_id"))
        case "response.output_audio_transcript.delta":
            return AudioTranscriptDelta(_s(obj, "item_id"), _s(obj, "delta"))
        case "response.output_audio_transcript.done":
            return AudioTranscriptDone(_s(obj, "item_id"), _s(obj, "transcript"))
        case "response.function_call_arguments.done":
            return FunctionCall(
                _s(obj, "call_id"),
                _s(obj, "name"),
                _s(obj, "arguments"),
                _s(obj, "item_id"),
                _s(obj, "response_id"),
            )
        case "response.done":
            resp = _d(obj, "response")
            output = resp.get("output")
            details = resp.get("status_details")
            return ResponseDone(
                _s(resp, "id"),
                _s(resp, "status"),
                details if isinstance(details, dict) else None,
                [o for o in output if isinstance(o, dict)] if isinstance(output, list) else [],
                _d(resp, "usage"),
            )
        case "conversation.item.truncated":
            return ItemTruncated(_s(obj, "item_id"), _i(obj, "audio_end_ms"))
        case "session.created":
            return SessionCreated(_d(obj, "session"))
        case "session.updated":
            return SessionUpdated(_d(obj, "session"))
        case "error":
            err = _d(obj, "error")
            return ErrorEvent(
                _s(err, "type"),
                _s(err, "code"),
                _s(err, "message"),
                _s(err, "param"),
                _s(err, "event_id"),
            )
        case _:
            return UnknownEvent(kind, obj)
