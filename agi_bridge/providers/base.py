"""The provider seam: neutral events a speech-to-speech service produces, neutral commands
the conversation gives it, and the session object that carries both.

The conversation (agi_bridge/call/conversation.py) never sees a provider's wire events.
A provider maps its protocol onto these: the OpenAI Realtime GA protocol does so almost one
to one (providers/realtime.py); a service whose server drives the turns itself may never
emit ``ResponseStarted`` and may ignore ``Respond``: the conversation copes with both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from agi_bridge.protocol.realtime import SessionConfig

# ------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class AudioOut:
    """Agent audio, G.711 µ-law 8 kHz, of one item of one response."""

    response_id: str
    item_id: str
    audio: bytes


@dataclass(frozen=True, slots=True)
class AudioOutDone:
    item_id: str


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The provider's VAD heard the caller start talking (barge-in when the agent talks)."""

    item_id: str


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    item_id: str


@dataclass(frozen=True, slots=True)
class ResponseStarted:
    response_id: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str
    response_id: str = ""  # lets the conversation ignore calls of a response the caller cut


@dataclass(frozen=True, slots=True)
class ResponseEnded:
    response_id: str
    status: str  # completed, cancelled, incomplete, failed ("" when unknown)
    usage: Mapping[str, Any] = field(default_factory=dict)
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class CallerTranscriptDelta:
    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class CallerTranscript:
    item_id: str
    text: str
    usage: Mapping[str, Any] = field(default_factory=dict)  # billed transcription usage


@dataclass(frozen=True, slots=True)
class CallerTranscriptFailed:
    item_id: str
    message: str


@dataclass(frozen=True, slots=True)
class AgentTranscript:
    item_id: str
    text: str


@dataclass(frozen=True, slots=True)
class CallerIdle:
    """The caller has said nothing for the configured idle timeout."""


@dataclass(frozen=True, slots=True)
class ProviderError:
    code: str
    message: str
    kind: str = ""
    param: str = ""
    event_id: str = ""
    fatal: bool = False  # no new session can fix it (bad key, no quota): fall back
    resumable: bool = False  # the session ends but a new one may carry the call on
    response_busy: bool = False  # a response was requested while one was active


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event the conversation has no use for (logged at debug)."""

    type: str


ProviderEvent = (
    AudioOut
    | AudioOutDone
    | SpeechStarted
    | SpeechStopped
    | ResponseStarted
    | ToolCall
    | ResponseEnded
    | CallerTranscriptDelta
    | CallerTranscript
    | CallerTranscriptFailed
    | AgentTranscript
    | CallerIdle
    | ProviderError
    | Ignored
)

# ---------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Configure:
    session: SessionConfig


@dataclass(frozen=True, slots=True)
class AppendAudio:
    ulaw: bytes


@dataclass(frozen=True, slots=True)
class Respond:
    instructions: str | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    pass


@dataclass(frozen=True, slots=True)
class Truncate:
    """The caller heard ``audio_end_ms`` of ``item_id`` and no more."""

    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    output: str  # JSON text


@dataclass(frozen=True, slots=True)
class AddMessage:
    role: Literal["user", "system"]
    text: str


Command = Configure | AppendAudio | Respond | Cancel | Truncate | ToolResult | AddMessage


class ProviderSession(Protocol):
    """One live session with a speech-to-speech service.

    ``send`` raises RealtimeError when the connection is gone; ``events`` ends when the
    server closed the session cleanly and raises RealtimeError when it was lost."""

    async def send(self, command: Command) -> None: ...

    def events(self) -> AsyncIterator[ProviderEvent]: ...

    async def close(self) -> None: ...


# Opens a session for a model name.
ProviderConnector = Callable[[str], Awaitable[ProviderSession]]
