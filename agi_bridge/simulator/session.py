"""One simulated Realtime session: the client events it accepts, and what a test can observe.

A session runs in one TaskGroup: the receive loop, the fault-injection timers and at most
one response task. Client events are handled one at a time in arrival order, like the
service; a response streams concurrently and is stopped cooperatively (barge-in, cancel).

Every record is bounded: ``received``/``sent``/... keep the newest ``max_records`` entries,
audio payloads are recorded as their byte length, and the decoded caller audio is kept only
up to ``keep_caller_audio_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from agi_bridge.simulator.codec import AudioFormat
from agi_bridge.simulator.conversation import Conversation
from agi_bridge.simulator.events import error, event, new_id, rate_limits
from agi_bridge.simulator.idle import IdleTimer
from agi_bridge.simulator.input_events import InputEvents
from agi_bridge.simulator.item_events import ItemEvents, Limits, append_capped
from agi_bridge.simulator.responses import ResponseParams, ResponseRecord, ResponseRun
from agi_bridge.simulator.scenario import Scenario, Turn
from agi_bridge.simulator.schema import (
    SchemaError,
    apply_session_update,
    check_response,
    default_session,
)
from agi_bridge.simulator.usage import Context, usage

log = logging.getLogger("agi_bridge.simulator")


def _b64_len(text: str) -> int:
    return len(text) * 3 // 4 - text[-2:].count("=") if text else 0


class SimSession(InputEvents, ItemEvents):
    """Server side of one websocket. Attributes without a leading underscore are the
    observation API for tests."""

    def __init__(
        self, ws: ServerConnection, scenario: Scenario, limits: Limits, notify: Callable[[], None]
    ):
        self._ws = ws
        self._limits = limits
        self._notify = notify
        self.scenario = scenario
        self.id = new_id("sess")
        request = ws.request
        self.path = request.path if request else ""
        query = re.search(r"[?&](?:model|deployment)=([^&]+)", self.path)
        self.model = query.group(1) if query else "gpt-realtime"
        # Which header authenticated (never the key itself).
        self.auth_header = ""
        if request is not None:
            self.auth_header = "authorization" if "Authorization" in request.headers else "api-key"
        self.session: dict[str, Any] = default_session(self.id, self.model, scenario.max_session_ms)
        self.conversation = Conversation(limits.max_items)

        # Observation records.
        self.received: list[dict[str, Any]] = []
        self.received_counts: Counter[str] = Counter()
        self.sent: list[dict[str, Any]] = []
        self.sent_counts: Counter[str] = Counter()
        self.errors_sent: list[dict[str, Any]] = []
        self.truncates: list[dict[str, Any]] = []
        self.function_outputs: list[dict[str, Any]] = []
        self.responses: list[ResponseRecord] = []
        self.speech_started_count = 0
        self.speech_stopped_count = 0
        self.committed_count = 0
        self.caller_audio_bytes = 0  # encoded bytes received in appends
        self.caller_audio_ms = 0.0
        self.caller_audio = bytearray()  # decoded slin16 LE at caller_audio_rate, capped
        self.caller_audio_rate = 0
        self.last_output: str | None = None  # the last function_call_output received
        self.closed = False
        self.stalled = False  # Scenario.stall_after_ms: sends nothing from then on
        self.close_code: int | None = None

        # Protocol state.
        self._in_fmt = AudioFormat.from_session(self.session["audio"]["input"]["format"])
        self._timeline_ms = 0.0  # audio appended since the session began
        self._buffer_start_ms = 0.0  # start of the uncommitted input buffer
        self._speech_item: str | None = None
        self._speech_start_ms = 0
        self._vad = self._make_vad()
        self._idle = IdleTimer()
        self._response_began_ms = 0.0  # input timeline when the active response began
        self._active: ResponseRun | None = None
        self._active_task: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._turn_index = 0
        self._greeting_done = False
        self._caller_spoke = False
        self._assistant_spoke = False
        self._calls: dict[str, str] = {}  # call_id -> name of function calls emitted
        self._previous_context: Context | None = None
        self._handlers: dict[str, Callable[[dict[str, Any], str | None], Awaitable[None]]] = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_append,
            "input_audio_buffer.commit": self._on_commit,
            "input_audio_buffer.clear": self._on_clear,
            "conversation.item.create": self._on_item_create,
            "conversation.item.truncate": self._on_truncate,
            "conversation.item.delete": self._on_item_delete,
            "conversation.item.retrieve": self._on_item_retrieve,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
        }

    def __repr__(self) -> str:
        return f"<SimSession {self.id} closed={self.closed} responses={len(self.responses)}>"

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        sc = self.scenario
        timers: list[tuple[int | None, Callable[[], Awaitable[None]]]] = [
            (sc.max_session_ms, lambda: self._fail("session_expired", 1001)),
            (sc.error_after_ms, lambda: self._fail(sc.error_code, sc.close_code)),
            (sc.close_after_ms, lambda: self._ws.close(sc.close_code, "simulated close")),
            (sc.malformed_after_ms, lambda: self._ws.send("{this is not json")),
            (sc.stall_after_ms, self._stall),
        ]
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tasks = [
                    tg.create_task(self._after(ms, act)) for ms, act in timers if ms is not None
                ]
                try:
                    await self._greet()
                    async for message in self._ws:
                        await self._handle(message)
                finally:
                    for task in tasks:
                        task.cancel()
                    if self._active_task is not None:
                        self._active_task.cancel()
        except* ConnectionClosed:
            pass
        finally:
            self.closed = True
            self.close_code = self._ws.close_code
            log.info("%s closed (code %s)", self.id, self.close_code)
            self._notify()

    async def _after(self, ms: int, action: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(ms / 1000)
        with contextlib.suppress(ConnectionClosed):
            await action()

    async def _greet(self) -> None:
        if self.scenario.delay_session_created_ms:
            await asyncio.sleep(self.scenario.delay_session_created_ms / 1000)
        await self.send(event("session.created", session=self.session))
        if self.scenario.send_unknown_events:
            await self.send(event("session.future_feature", detail={"simulated": True}))

    async def _fail(self, code: str, close_code: int) -> None:
        """A fatal server error, then the close the service does after it."""
        if code == "session_expired":
            minutes = self.scenario.max_session_ms / 60_000
            message = f"Your session hit the maximum duration of {minutes:g} minutes."
            kind, close_code = "invalid_request_error", 1001
        elif code == "server_error":
            message = "The server had an error while processing your request. Sorry about that!"
            kind = "server_error"
        else:
            message, kind = f"Simulated error: {code}.", "invalid_request_error"
        await self.send(error(code, message, kind=kind))
        await self._ws.close(close_code, code)

    # ------------------------------------------------------------------- output

    async def _stall(self) -> None:
        log.info("%s stalls: no more events (the socket stays open)", self.id)
        self.stalled = True

    async def send(self, message: dict[str, Any]) -> None:
        """Send one server event and record it (audio as its byte length)."""
        if self.stalled:
            return  # a stalled service: open, but silent
        kind = message["type"]
        record = message
        if kind == "response.output_audio.delta":
            record = {**message, "delta": _b64_len(message["delta"])}
        elif kind == "error":
            append_capped(self.errors_sent, message, self._limits.max_records)
            log.info("%s error sent: %s", self.id, message["error"]["message"])
        append_capped(self.sent, record, self._limits.max_records)
        self.sent_counts[kind] += 1
        await self._ws.send(json.dumps(message, separators=(",", ":")))
        self._notify()

    async def _error(self, exc: SchemaError, client_event_id: str | None) -> None:
        await self.send(
            error(exc.code, exc.message, param=exc.param, client_event_id=client_event_id)
        )

    # -------------------------------------------------------------------- input

    async def _handle(self, message: str | bytes) -> None:
        try:
            obj = json.loads(message)
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            self.received_counts["<invalid json>"] += 1
            invalid = {"type": "<invalid json>", "size": len(message)}
            append_capped(self.received, invalid, self._limits.max_records)
            await self.send(
                error("invalid_json", f"Invalid JSON: the message could not be parsed ({exc}).")
            )
            return
        if not isinstance(obj, dict):
            await self.send(error("invalid_type", "Invalid event: expected a JSON object."))
            return
        client_event_id = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
        kind = obj.get("type")
        record = obj
        if kind == "input_audio_buffer.append" and isinstance(obj.get("audio"), str):
            record = {**obj, "audio": _b64_len(obj["audio"])}
        append_capped(self.received, record, self._limits.max_records)
        if not isinstance(kind, str):
            self.received_counts["<no type>"] += 1
            await self.send(
                error(
                    "missing_required_parameter",
                    "Missing required parameter: 'type'.",
                    param="type",
                    client_event_id=client_event_id,
                )
            )
            return
        handler = self._handlers.get(kind)
        if handler is None:
            self.received_counts["<unknown type>"] += 1  # bounded: not keyed by the type
            supported = ", ".join(f"'{k}'" for k in self._handlers)
            await self.send(
                error(
                    "invalid_value",
                    f"Invalid value: '{kind}'. Supported values are: {supported}.",
                    param="type",
                    client_event_id=client_event_id,
                )
            )
            return
        self.received_counts[kind] += 1
        try:
            await handler(obj, client_event_id)
        except SchemaError as exc:
            await self._error(exc, client_event_id)
        self._notify()

    # ------------------------------------------------------------------ session

    async def _on_session_update(self, obj: dict[str, Any], _eid: str | None) -> None:
        old = self.session
        self.session = apply_session_update(
            old, obj.get("session"), has_assistant_audio=self._assistant_spoke
        )
        old_in, new_in = old["audio"]["input"], self.session["audio"]["input"]
        if (
            old_in["format"] != new_in["format"]
            or old_in["turn_detection"] != new_in["turn_detection"]
        ):
            self._in_fmt = AudioFormat.from_session(new_in["format"])
            self._speech_item = None
            self._vad = self._make_vad()
        await self.send(event("session.updated", session=self.session))

    # ---------------------------------------------------------------- responses

    async def _on_response_create(self, obj: dict[str, Any], _eid: str | None) -> None:
        if self._active is not None:
            raise SchemaError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self._active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        await self._start_response("client", check_response(obj.get("response"), self.session))

    async def _on_response_cancel(self, obj: dict[str, Any], _eid: str | None) -> None:
        wanted = obj.get("response_id")
        if self._active is None or (wanted is not None and wanted != self._active.id):
            raise SchemaError(
                "response_cancel_not_active", "Cancellation failed: no active response found."
            )
        await self._cancel_active("client_cancelled")

    async def _cancel_active(self, reason: str) -> None:
        run = self._active
        if run is not None:
            run.stop(reason)
            await run.finished.wait()  # its response.done goes out before the next event

    def _next_turn(self, trigger: str) -> tuple[str, Turn]:
        sc = self.scenario
        first = not self._greeting_done
        self._greeting_done = True
        if first and trigger == "client" and not self._caller_spoke and sc.greeting:
            return "greeting", Turn(sc.greeting)
        if self._turn_index < len(sc.turns):
            self._turn_index += 1
            return f"turn {self._turn_index - 1}", sc.turns[self._turn_index - 1]
        return "default", Turn(sc.default_reply)

    def _fill(self, text: str) -> str:
        """``{output}`` / ``{output.KEY}`` -> the last function output (or a field of it)."""
        if "{output" not in text:
            return text
        raw = self.last_output or ""
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None

        def field(match: re.Match[str]) -> str:
            key = match.group(1)
            if key is None:
                return raw
            return str(parsed.get(key, "")) if isinstance(parsed, dict) else ""

        return re.sub(r"\{output(?:\.(\w+))?\}", field, text)

    async def _start_response(self, trigger: str, settings: dict[str, Any]) -> None:
        script, turn = self._next_turn(trigger)
        record = ResponseRecord(new_id("resp"), trigger, script, self._fill(turn.text))
        append_capped(self.responses, record, self._limits.max_records)
        params = ResponseParams(
            out_format=AudioFormat.from_session(settings["format"]),
            voice=settings["voice"],
            modality=settings["modality"],
            in_conversation=settings["in_conversation"],
            max_output_tokens=settings["max_output_tokens"],
            metadata=settings["metadata"],
        )
        run = ResponseRun(self, record, turn.tool_calls, params)
        tools_chars = len(json.dumps(self.session["tools"])) if self.session["tools"] else 0
        if params.in_conversation:
            run.context = self.conversation.context(settings["instructions"], tools_chars)
        else:
            run.context = Context(text_chars=len(settings["instructions"]) + tools_chars)
        self._active = run
        self._idle.disarm()
        self._response_began_ms = self._timeline_ms
        await run.begin()
        assert self._tg is not None
        self._active_task = self._tg.create_task(self._stream(run))

    async def _stream(self, run: ResponseRun) -> None:
        try:
            await run.run()
        except ConnectionClosed:
            pass
        finally:
            if self._active is run:
                self._active = None

    # Host protocol for ResponseRun.

    def register_call(self, call_id: str, name: str) -> None:
        self._calls[call_id] = name
        while len(self._calls) > self._limits.max_items:
            del self._calls[next(iter(self._calls))]

    def response_finished(self, run: ResponseRun) -> dict[str, Any]:
        """Book-keeping when a response ends (before its response.done goes out)."""
        if self._active is run:
            self._active = None
        run.record.usage = usage(
            run.context, self._previous_context, run.record.audio_ms, run.out_text_chars
        )
        self._previous_context = run.context
        if self._speech_item is None:  # not cut off by the caller: count silence after it
            self._idle.arm(max(self._timeline_ms, self._response_began_ms + run.record.audio_ms))
        self._assistant_spoke = self._assistant_spoke or run.record.audio_ms > 0
        log.info(
            "%s %s %s: %s, %.0f ms of audio",
            self.id,
            run.id,
            run.record.script,
            run.record.status,
            run.record.audio_ms,
        )
        used = sum(r.usage["total_tokens"] for r in self.responses[-50:] if r.usage)
        return rate_limits(used, min(len(self.responses), 50))
