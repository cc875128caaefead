"""GPT-Live behind the provider seam: neutral commands to GPT-Live events and back.

GPT-Live differs from the Realtime API in ways the conversation must not see
(protocol/gpt_live.py lists the sources):

- The session starts with ``session.start`` (model, instructions, voice, µ-law 8 kHz
  both ways, delegation) and nothing may be sent before ``session.started``: the first
  ``Configure`` does that and waits; caller audio before it is dropped.
- The server drives turns and is full duplex: there are no responses, no
  ``speech_started``, no item ids and no truncation. This module makes the neutral events
  from what GPT-Live does send: the first ``session.input_transcript.delta`` after agent
  audio is the caller starting to talk (``SpeechStarted``: the conversation stops the
  audio it buffered); agent audio after that is the next agent turn (``SpeechStopped``,
  the caller's ``CallerTranscript``, a new item id), except for the first ``TAIL_MS``,
  which is the interrupted utterance's tail and keeps the cut item id (the conversation
  drops it). ``Truncate`` and ``Cancel`` have no GPT-Live equivalent and are not sent.
- Tools: with tools the session uses ``responses`` delegation (``realtime.backend_model``
  runs them); a function call arrives in ``response.event`` and is handed to the
  conversation once the agent's audio has paused for ``QUIET_MS`` (so a hangup follows
  the goodbye rather than racing it). Its result goes back with ``response.item.create``;
  when every call of that delegation has its result, ``response.create`` lets the
  backend continue. Without tools: ``client`` delegation (nothing is delegated to us).
- ``Respond(instructions)`` (the greeting, a goodbye): GPT-Live has no per-response
  instructions; what the instructions add to the session's is sent as
  ``session.commentary.append`` (guidance the model tells the caller). A bare
  ``Respond()`` is not needed: the server answers by itself.
- ``AddMessage``: a user line (``[caller pressed 5]``) is context
  (``session.thinking.append``), a system line ``session.instructions.append``. A later
  ``Configure`` (agent switch) can change only the delegation (tools), and appends the new
  instructions: GPT-Live fixes model, voice and the startup instructions.
- Billing is per second of session: ``session.usage.updated`` / ``session.closed`` ->
  ``SessionUsage`` (cumulative).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

from agi_bridge.config import Config
from agi_bridge.errors import RealtimeError
from agi_bridge.live_connection import LIVE_URL, connect_live, start_live
from agi_bridge.protocol import gpt_live as gl
from agi_bridge.protocol.realtime import FATAL_ERROR_CODES, SessionConfig
from agi_bridge.providers import base as p

log = logging.getLogger(__name__)

TAIL_MS = 300  # agent audio this soon after the caller started: the cut utterance's tail
QUIET_MS = 300  # a pause this long ends an agent utterance; then held tool calls go out
HOLD_MAX_MS = 1500  # a tool call with no agent words after it waits at most this long
MAX_COMMENTARY_CHARS = 1500  # commentary is limited to 500 tokens
CLOSE_WAIT_S = 2.0


def live_start(session: SessionConfig, backend_model: str) -> gl.LiveSessionConfig:
    """The GPT-Live session for a Realtime-shaped SessionConfig (the conversation's)."""
    if session.tools:
        return gl.LiveSessionConfig(
            model=session.model,
            instructions=session.instructions,
            voice=session.voice,
            delegation="responses",
            backend_model=backend_model,
            tools=session.tools,
        )
    return gl.LiveSessionConfig(
        model=session.model, instructions=session.instructions, voice=session.voice
    )


def _delegation(session: SessionConfig, backend_model: str) -> dict[str, Any]:
    start = gl.session_start(live_start(session, backend_model))
    delegation: dict[str, Any] = start["session"]["delegation"]
    return delegation


class LiveTranslator:
    """GPT-Live server events -> neutral events, sans-I/O (``now`` in seconds)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.agent_item = ""  # the agent utterance audio goes to; "" = none yet
        self.response_id = ""
        self.agent_text = ""
        self.cut_item = ""  # the utterance the caller talked over (its tail is dropped)
        self.caller_item = ""  # "" = the caller is not talking
        self.caller_text = ""
        self.caller_started_at = 0.0
        self.last_audio_at: float | None = None
        self.held: list[p.ToolCall] = []
        self.held_since = 0.0
        self.pending: dict[str, set[str]] = {}  # delegation id -> call ids without result

    def _new_id(self, kind: str) -> str:
        return f"live_{kind}_{next(self._ids)}"

    def _end_agent_turn(self) -> list[p.ProviderEvent]:
        out: list[p.ProviderEvent] = []
        if self.agent_item:
            if self.agent_text.strip():
                out.append(p.AgentTranscript(self.agent_item, self.agent_text.strip()))
            out.append(p.AudioOutDone(self.agent_item))
        self.agent_item, self.agent_text = "", ""
        return out

    def _end_caller_turn(self) -> list[p.ProviderEvent]:
        out: list[p.ProviderEvent] = []
        if self.caller_item:
            out.append(p.SpeechStopped(self.caller_item))
            out.append(p.CallerTranscript(self.caller_item, self.caller_text.strip()))
        self.caller_item, self.caller_text = "", ""
        return out

    def feed(self, ev: gl.ServerEvent, now: float) -> list[p.ProviderEvent]:
        match ev:
            case gl.OutputAudio(audio):
                return self._on_audio(audio, now)
            case gl.OutputTranscript(delta):
                self.agent_text += delta
                return []
            case gl.InputTranscript(delta):
                out: list[p.ProviderEvent] = []
                if not self.caller_item:
                    self.cut_item = self.agent_item
                    out += self._end_agent_turn()
                    self.caller_item = self._new_id("caller")
                    self.caller_started_at = now
                    out.append(p.SpeechStarted(self.caller_item))
                self.caller_text += delta
                out.append(p.CallerTranscriptDelta(self.caller_item, delta))
                return out
            case gl.FunctionCall(call_id, name, arguments, delegation_id):
                if not self.held:
                    self.held_since = now
                self.held.append(p.ToolCall(call_id, name, arguments))
                self.pending.setdefault(delegation_id, set()).add(call_id)
                return self.tick(now)
            case gl.UsageUpdated(seconds):
                return [p.SessionUsage(seconds)]
            case gl.SessionClosed(reason, seconds):
                out = [*self._end_caller_turn(), *self._end_agent_turn(), p.SessionUsage(seconds)]
                if reason == "expired":  # the session-duration limit: a new one carries on
                    msg = "GPT-Live session expired"
                    out.append(p.ProviderError("session_expired", msg, resumable=True))
                return out
            case gl.ErrorEvent(kind, code, message, client_event_id):
                fatal = code in FATAL_ERROR_CODES and code != "session_expired"
                return [p.ProviderError(code, message, kind, "", client_event_id, fatal=fatal)]
            case gl.ResponseEvent(event):
                return [p.Ignored(f"response.event {event.get('type', '')}")]
            case gl.SessionStarted() | gl.SessionUpdated() | gl.DelegationCreated():
                return [p.Ignored(type(ev).__name__)]
            case gl.UnknownEvent(kind):
                return [p.Ignored(kind)]
        return [p.Ignored(type(ev).__name__)]

    def _on_audio(self, audio: bytes, now: float) -> list[p.ProviderEvent]:
        previous, self.last_audio_at = self.last_audio_at, now
        if self.caller_item and self.cut_item and now - self.caller_started_at < TAIL_MS / 1000:
            # still the utterance the caller cut: the conversation drops its audio
            return [p.AudioOut(self.response_id, self.cut_item, audio)]
        out = self._end_caller_turn()
        if self.agent_item and previous is not None and now - previous >= QUIET_MS / 1000:
            out += self._end_agent_turn()  # a pause: the next utterance begins
        if not self.agent_item:
            self.agent_item = self._new_id("item")
            self.response_id = self._new_id("turn")
        out.append(p.AudioOut(self.response_id, self.agent_item, audio))
        return out

    def tick(self, now: float) -> list[p.ProviderEvent]:
        """Held tool calls, once the agent's words around them have arrived: audio came
        after the call and then paused, or none came for ``HOLD_MAX_MS``."""
        due = self.next_tick()
        if due is None or now < due:
            return []
        calls, self.held = self.held, []
        out: list[p.ProviderEvent] = []
        if self.agent_text.strip():  # the words before the call, for the record
            out.append(p.AgentTranscript(self.agent_item, self.agent_text.strip()))
        self.agent_text = ""
        return [*out, *calls]

    def next_tick(self) -> float | None:
        """When ``tick`` may release held calls (None: nothing held)."""
        if not self.held:
            return None
        if self.last_audio_at is not None and self.last_audio_at >= self.held_since:
            return self.last_audio_at + QUIET_MS / 1000  # words after the call: their end
        return self.held_since + HOLD_MAX_MS / 1000

    def result_sent(self, call_id: str) -> bool:
        """A tool result went back; True when its delegation now has every result."""
        for delegation, calls in list(self.pending.items()):
            if call_id in calls:
                calls.discard(call_id)
                if not calls:
                    del self.pending[delegation]
                    return True
        return False


class GptLiveProvider:
    """One GPT-Live session seen through the provider seam."""

    def __init__(
        self,
        ws: ClientConnection,
        *,
        backend_model: str,
        start_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ws = ws
        self._backend_model = backend_model
        self._start_timeout = start_timeout
        self._clock = clock
        self._started = asyncio.Event()
        self._session: SessionConfig | None = None
        self.translator = LiveTranslator()
        self.dropped_audio_bytes = 0  # caller audio sent before session.started
        self.final_usage_s: float | None = None  # from session.closed, when it came
        self._reading = False  # events() is iterating the socket

    async def _send(self, event: dict[str, Any]) -> None:
        try:
            await self._ws.send(gl.encode(event))
        except ConnectionClosed as exc:
            raise RealtimeError(f"GPT-Live connection closed: {exc}") from exc

    async def send(self, command: p.Command) -> None:
        match command:
            case p.Configure(session):
                await self._configure(session)
                return
            case p.AppendAudio(ulaw):
                if self._started.is_set():
                    await self._send(gl.input_audio_append(ulaw))
                else:
                    self.dropped_audio_bytes += len(ulaw)
                return
        if not self._started.is_set():
            async with asyncio.timeout(self._start_timeout):
                await self._started.wait()
        match command:
            case p.Respond(instructions):
                said = self._said(instructions)
                if said:
                    await self._send(gl.commentary_append(said))
            case p.ToolResult(call_id, output):
                await self._send(gl.function_call_output(call_id, output))
                if self.translator.result_sent(call_id):
                    await self._send(gl.response_create())
            case p.AddMessage(role, text):
                event = gl.thinking_append(text) if role == "user" else gl.instructions_append(text)
                await self._send(event)
            case p.Cancel() | p.Truncate():
                pass  # the server drives turns: nothing to cancel or truncate

    def _said(self, instructions: str | None) -> str:
        """What a Respond's instructions add to the session's (the greeting, a goodbye)."""
        if not instructions:
            return ""
        base = self._session.instructions if self._session else ""
        extra = (
            instructions[len(base) :] if base and instructions.startswith(base) else instructions
        )
        lines = [line for line in extra.strip().splitlines() if line.strip() != "# Now"]
        return "\n".join(lines).strip()[:MAX_COMMENTARY_CHARS]

    async def _configure(self, session: SessionConfig) -> None:
        if self._session is None:
            self._session = session
            conn = await start_live(
                self._ws, live_start(session, self._backend_model), timeout=self._start_timeout
            )
            log.info("GPT-Live session %s started (model %s)", conn.session_id, session.model)
            self._started.set()
            return
        previous, self._session = self._session, session
        if session.tools != previous.tools:
            update = {"delegation": _delegation(session, self._backend_model)}
            await self._send({"type": "session.update", "session": update})
        if session.instructions != previous.instructions:
            # startup instructions cannot be replaced: the new ones are appended
            await self._send(gl.instructions_append(session.instructions[:MAX_COMMENTARY_CHARS]))

    async def events(self) -> AsyncIterator[p.ProviderEvent]:
        translator, clock = self.translator, self._clock
        self._reading = True
        try:
            while True:
                due = translator.next_tick()
                wait = None if due is None else max(0.0, due - clock())
                try:
                    # recv() may be cancelled safely (websockets' asyncio API): a held
                    # tool call needs a wake-up even when the server sends nothing
                    async with asyncio.timeout(wait):
                        message = await self._ws.recv()
                except TimeoutError:
                    for out in translator.tick(clock()):
                        yield out
                    continue
                for out in translator.feed(gl.parse_server_event(message), clock()):
                    yield out
                for out in translator.tick(clock()):
                    yield out
        except ConnectionClosedOK:
            return  # the server closed the session cleanly
        except ConnectionClosedError as exc:
            raise RealtimeError(f"GPT-Live connection lost: {exc}") from exc
        finally:
            self._reading = False

    async def close(self) -> None:
        """``session.close``, then (bounded) the ``session.closed`` with the final usage,
        then the socket. The final figure is logged and kept in ``final_usage_s``: the
        seam has no way to hand it to the call after its event loop ended."""
        if self._started.is_set():
            with contextlib.suppress(RealtimeError, TimeoutError, ConnectionClosed):
                await self._send(gl.session_close())
                if not self._reading:
                    async with asyncio.timeout(CLOSE_WAIT_S):
                        async for message in self._ws:
                            event = gl.parse_server_event(message)
                            if isinstance(event, gl.SessionClosed):
                                self.final_usage_s = event.seconds
                                log.info("GPT-Live session closed: %.1f s billed", event.seconds)
                                break
        with contextlib.suppress(TimeoutError, ConnectionClosed, OSError):
            await asyncio.wait_for(self._ws.close(), CLOSE_WAIT_S)


def live_provider(cfg: Config) -> p.ProviderConnector:
    """Open GPT-Live sessions as ``realtime:`` says: ``url`` (default OpenAI's),
    the key from ``api_key_env``, tools on ``backend_model``."""
    rt_cfg = cfg.realtime
    url = rt_cfg.url or LIVE_URL
    timeout = rt_cfg.connect_timeout_s

    async def open_session(model: str) -> p.ProviderSession:
        del model  # it goes in session.start, with the first Configure
        ws = await connect_live(url, os.environ.get(rt_cfg.api_key_env, ""), timeout=timeout)
        return GptLiveProvider(ws, backend_model=rt_cfg.backend_model, start_timeout=timeout)

    return open_session
