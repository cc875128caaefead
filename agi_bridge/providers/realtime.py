"""The OpenAI Realtime GA protocol behind the provider seam (REFERENCE §5).

Commands become GA client events one to one; server events become neutral events. The
wire connection is agi_bridge/realtime.py (websockets); this module only translates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from agi_bridge.protocol import realtime as rt
from agi_bridge.providers import base as p
from agi_bridge.realtime import Connector, RealtimeSession


def client_event(command: p.Command) -> dict[str, Any]:
    """The GA client event for a neutral command."""
    match command:
        case p.AppendAudio(ulaw):
            return rt.input_audio_append(ulaw)
        case p.Truncate(item_id, audio_end_ms):
            return rt.item_truncate(item_id, audio_end_ms)
        case p.Respond(instructions):
            return rt.response_create(instructions)
        case p.Cancel():
            return rt.response_cancel()
        case p.ToolResult(call_id, output):
            return rt.function_call_output(call_id, output)
        case p.AddMessage(role, text):
            return rt.user_text(text) if role == "user" else rt.system_text(text)
        case p.Configure(session):
            return rt.session_update(session)
    raise TypeError(f"not a provider command: {command!r}")


def neutral_event(ev: rt.ServerEvent) -> p.ProviderEvent:
    """The neutral event for a GA server event."""
    match ev:
        case rt.AudioDelta(response_id, item_id, audio):
            return p.AudioOut(response_id, item_id, audio)
        case rt.SpeechStarted(item_id):
            return p.SpeechStarted(item_id)
        case rt.SpeechStopped(item_id):
            return p.SpeechStopped(item_id)
        case rt.ResponseCreated(response_id):
            return p.ResponseStarted(response_id)
        case rt.AudioDone(_, item_id):
            return p.AudioOutDone(item_id)
        case rt.FunctionCall(call_id, name, arguments, _, response_id):
            return p.ToolCall(call_id, name, arguments, response_id)
        case rt.ResponseDone():
            calls = tuple(
                p.ToolCall(fc.call_id, fc.name, fc.arguments, fc.response_id)
                for fc in ev.function_calls()
            )
            return p.ResponseEnded(ev.response_id, ev.status, ev.usage, calls)
        case rt.TranscriptionDelta(item_id, delta):
            return p.CallerTranscriptDelta(item_id, delta)
        case rt.TranscriptionCompleted(item_id, transcript, usage):
            # billed separately, at the transcription model's price
            billed = dataclasses.asdict(usage) if usage.kind else {}
            return p.CallerTranscript(item_id, transcript, billed)
        case rt.InputTimeout():
            # server VAD's idle_timeout_ms: the service commits the silence and answers
            # it itself (silent_caller.py says what the conversation does after that)
            return p.CallerIdle()
        case rt.TranscriptionFailed(item_id, message):
            return p.CallerTranscriptFailed(item_id, message)
        case rt.AudioTranscriptDone(item_id, transcript):
            return p.AgentTranscript(item_id, transcript)
        case rt.ErrorEvent(kind, code, message, param, event_id):
            return p.ProviderError(
                code,
                message,
                kind,
                param,
                event_id,
                fatal=code in rt.FATAL_ERROR_CODES and code not in rt.RESUMABLE_ERROR_CODES,
                resumable=code in rt.RESUMABLE_ERROR_CODES,
                response_busy=code == "conversation_already_has_active_response",
            )
        case rt.UnknownEvent(kind):
            return p.Ignored(kind)
    return p.Ignored(type(ev).__name__)


class RealtimeProvider:
    """A Realtime GA session seen through the provider seam."""

    def __init__(self, session: RealtimeSession) -> None:
        self._session = session

    async def send(self, command: p.Command) -> None:
        await self._session.send(client_event(command))

    async def events(self) -> AsyncIterator[p.ProviderEvent]:
        async for ev in self._session.events():
            yield neutral_event(ev)

    async def close(self) -> None:
        await self._session.close()


def realtime_provider(connect: Connector) -> p.ProviderConnector:
    """Wrap a Realtime websocket connector (agi_bridge.realtime.connector) as a provider."""

    async def open_session(model: str) -> p.ProviderSession:
        return RealtimeProvider(await connect(model))

    return open_session
