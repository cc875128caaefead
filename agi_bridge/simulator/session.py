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
import base64
import binascii
import contextlib
import json
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from agi_bridge.simulator.codec import AudioFormat
from agi_bridge.simulator.conversation import Conversation, ConvItem, item_from_client
from agi_bridge.simulator.events import error, event, new_id, rate_limits
from agi_bridge.simulator.responses import ResponseParams, ResponseRecord, ResponseRun
from agi_bridge.simulator.scenario import Scenario, Turn
from agi_bridge.simulator.schema import (
    SchemaError,
    apply_session_update,
    check_response,
    default_session,
)
from agi_bridge.simulator.usage import Context, usage
from agi_bridge.simulator.vad import EnergyVad, VadEvent, threshold_dbfs

log = logging.getLogger("agi_bridge.simulator")

MAX_APPEND_BYTES = 15 * 1024 * 1024  # the service's limit per input_audio_buffer.append
MIN_COMMIT_MS = 100  # the service refuses to commit less
SEMANTIC_SILENCE_MS = {"low": 800, "medium": 500, "high": 250, "auto": 500}
TRANSCRIPT_WORDS_PER_DELTA = 3


@dataclass(frozen=True, slots=True)
class Limits:
    max_records: int = 10_000
    keep_caller_audio_ms: int = 60_000
    max_items: int = 2048


def _append_capped(records: list[Any], entry: Any, cap: int) -> None:
    """Keep the newest ``cap`` entries; trim in batches so appending stays O(1) amortised."""
    records.append(entry)
    if len(records) > cap:
        del records[: len(records) - cap + max(1, cap // 10)]


def _b64_len(text: str) -> int:
    return len(text) * 3 // 4 - text[-2:].count("=") if text else 0


class SimSession:
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
            _append_capped(self.errors_sent, message, self._limits.max_records)
            log.info("%s error sent: %s", self.id, message["error"]["message"])
        _append_capped(self.sent, record, self._limits.max_records)
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
            _append_capped(self.received, invalid, self._limits.max_records)
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
        _append_capped(self.received, record, self._limits.max_records)
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

    def _make_vad(self) -> EnergyVad | None:
        td = self.session["audio"]["input"]["turn_detection"]
        if td is None:
            return None
        base = self.scenario.vad_threshold_dbfs
        if td["type"] == "server_vad":
            level = threshold_dbfs(base, td["threshold"])
            silence, padding = td["silence_duration_ms"], td["prefix_padding_ms"]
        else:
            level, silence, padding = base, SEMANTIC_SILENCE_MS[td["eagerness"]], 300
        vad = EnergyVad(
            self._in_fmt.rate,
            threshold_dbfs=level,
            silence_ms=silence,
            prefix_padding_ms=padding,
            offset_ms=self._timeline_ms,
        )
        vad.floor_ms = int(self._buffer_start_ms)
        return vad

    @property
    def _turn_detection(self) -> dict[str, Any] | None:
        td: dict[str, Any] | None = self.session["audio"]["input"]["turn_detection"]
        return td

    # ------------------------------------------------------------- input audio

    async def _on_append(self, obj: dict[str, Any], _eid: str | None) -> None:
        audio = obj.get("audio")
        if not isinstance(audio, str):
            raise SchemaError(
                "invalid_type", "Invalid type for 'audio': expected a string.", "audio"
            )
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise SchemaError(
                "invalid_value", "Invalid 'audio'. Expected base64-encoded audio data.", "audio"
            ) from None
        if len(data) > MAX_APPEND_BYTES:
            raise SchemaError(
                "invalid_value", "Invalid 'audio': at most 15 MiB per event.", "audio"
            )
        samples = self._in_fmt.decode(data)
        ms = len(samples) * 1000 / self._in_fmt.rate
        self.caller_audio_bytes += len(data)
        self.caller_audio_ms += ms
        self._timeline_ms += ms
        self._keep_caller_audio(samples.astype("<i2").tobytes())
        if self._vad is not None:
            for vad_event in self._vad.feed(samples):
                await self._on_vad(vad_event)

    def _keep_caller_audio(self, pcm: bytes) -> None:
        if not self.caller_audio_rate:
            self.caller_audio_rate = self._in_fmt.rate
        if self.caller_audio_rate != self._in_fmt.rate:
            return  # the format changed mid-session: keep one rate, not a mix
        cap = self._limits.keep_caller_audio_ms * self.caller_audio_rate // 1000 * 2
        room = cap - len(self.caller_audio)
        if room > 0:
            self.caller_audio += pcm[:room]

    async def _on_vad(self, vad_event: VadEvent) -> None:
        td = self._turn_detection
        assert td is not None  # a VAD exists only with turn detection
        if vad_event.kind == "start":
            self._speech_item = new_id("item")
            self._speech_start_ms = vad_event.ms
            self.speech_started_count += 1
            await self.send(
                event(
                    "input_audio_buffer.speech_started",
                    audio_start_ms=vad_event.ms,
                    item_id=self._speech_item,
                )
            )
            if self._active is not None and td["interrupt_response"]:
                await self._cancel_active("turn_detected")
            return
        item_id = self._speech_item or new_id("item")
        self.speech_stopped_count += 1
        await self.send(
            event("input_audio_buffer.speech_stopped", audio_end_ms=vad_event.ms, item_id=item_id)
        )
        await self._commit(
            item_id, vad_event.ms - self._speech_start_ms, vad_event.ms, auto=td["create_response"]
        )

    async def _on_commit(self, _obj: dict[str, Any], _eid: str | None) -> None:
        buffered = self._timeline_ms - self._buffer_start_ms
        if buffered < MIN_COMMIT_MS:
            raise SchemaError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {buffered:.2f}ms of audio.",
            )
        start = self._speech_start_ms if self._speech_item else self._buffer_start_ms
        item_id = self._speech_item or new_id("item")
        await self._commit(item_id, self._timeline_ms - start, self._timeline_ms, auto=False)

    async def _on_clear(self, _obj: dict[str, Any], _eid: str | None) -> None:
        self._buffer_start_ms = self._timeline_ms
        self._speech_item = None
        if self._vad is not None:
            self._vad.reset(int(self._timeline_ms))
        await self.send(event("input_audio_buffer.cleared"))

    async def _commit(self, item_id: str, audio_ms: float, end_ms: float, *, auto: bool) -> None:
        """The caller's turn becomes a user item; maybe a response; maybe its transcript."""
        self._speech_item = None
        self._buffer_start_ms = end_ms
        if self._vad is not None:
            self._vad.reset(int(end_ms))
        transcript = self._caller_transcript(audio_ms)  # before a response consumes the turn
        item = ConvItem(
            item_id, "message", role="user", content_type="input_audio", audio_ms=audio_ms
        )
        previous = self.conversation.add(item)
        self._caller_spoke = True
        self.committed_count += 1
        await self.send(
            event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        )
        await self.send(
            event("conversation.item.added", previous_item_id=previous, item=item.to_json())
        )
        await self.send(
            event("conversation.item.done", previous_item_id=previous, item=item.to_json())
        )
        if auto and self._active is None:
            await self._start_response("turn_detection", check_response(None, self.session))
        if self.session["audio"]["input"]["transcription"] is not None:
            await self._transcribe(item, transcript)

    def _caller_transcript(self, audio_ms: float) -> str:
        turns = self.scenario.turns
        if self._turn_index < len(turns) and turns[self._turn_index].caller_text:
            return str(turns[self._turn_index].caller_text)
        return f"[caller spoke for {audio_ms / 1000:.1f} s]"

    async def _transcribe(self, item: ConvItem, transcript: str) -> None:
        words = transcript.split(" ")
        for i in range(0, len(words), TRANSCRIPT_WORDS_PER_DELTA):
            chunk = " ".join(words[i : i + TRANSCRIPT_WORDS_PER_DELTA])
            await self.send(
                event(
                    "conversation.item.input_audio_transcription.delta",
                    item_id=item.id,
                    content_index=0,
                    delta=chunk if i == 0 else " " + chunk,
                )
            )
        item.text = transcript
        await self.send(
            event(
                "conversation.item.input_audio_transcription.completed",
                item_id=item.id,
                content_index=0,
                transcript=transcript,
                usage={"type": "duration", "seconds": round(item.audio_ms / 1000, 3)},
            )
        )

    # ------------------------------------------------------------ conversation

    async def _on_item_create(self, obj: dict[str, Any], _eid: str | None) -> None:
        raw = obj.get("item")
        if not isinstance(raw, dict):
            raise SchemaError(
                "invalid_type", "Invalid type for 'item': expected an object.", "item"
            )
        previous_id = obj.get("previous_item_id")
        if previous_id not in (None, "root") and previous_id not in self.conversation:
            raise SchemaError(
                "invalid_value",
                f"Invalid 'previous_item_id': no item with id '{previous_id}' was found.",
                "previous_item_id",
            )
        item = item_from_client(raw, self._calls)
        if item.type == "function_call":
            self.register_call(item.call_id, item.name)
        if item.id in self.conversation:
            raise SchemaError(
                "invalid_value", f"Item with id '{item.id}' already exists.", "item.id"
            )
        if item.type == "function_call_output":
            _append_capped(
                self.function_outputs,
                {
                    "call_id": item.call_id,
                    "name": self._calls[item.call_id],
                    "output": item.output,
                    "item_id": item.id,
                },
                self._limits.max_records,
            )
            self.last_output = item.output
        elif item.role == "user":
            self._caller_spoke = True
        previous = self.conversation.add(item)
        await self.send(
            event("conversation.item.added", previous_item_id=previous, item=item.to_json())
        )
        await self.send(
            event("conversation.item.done", previous_item_id=previous, item=item.to_json())
        )

    async def _on_truncate(self, obj: dict[str, Any], _eid: str | None) -> None:
        item_id, content_index, end = (
            obj.get("item_id"),
            obj.get("content_index"),
            obj.get("audio_end_ms"),
        )
        if not isinstance(item_id, str):
            raise SchemaError(
                "missing_required_parameter", "Missing required parameter: 'item_id'.", "item_id"
            )
        if not isinstance(end, int) or isinstance(end, bool) or end < 0:
            raise SchemaError(
                "invalid_value", "Invalid 'audio_end_ms': expected an integer >= 0.", "audio_end_ms"
            )
        item = self.conversation.get(item_id)
        if item is None:
            raise SchemaError(
                "item_truncate_invalid_item_id",
                f"Item with item_id not found: {item_id}",
                "item_id",
            )
        if item.content_type != "output_audio":
            raise SchemaError(
                "invalid_value", "Only assistant messages with audio can be truncated.", "item_id"
            )
        if content_index != 0:
            raise SchemaError(
                "invalid_value",
                f"Invalid 'content_index': no audio content at {content_index!r}.",
                "content_index",
            )
        produced = int(item.produced_ms)
        if end > produced:
            raise SchemaError(
                "invalid_value",
                f"Audio content of {produced}ms is already shorter than {end}ms",
                "audio_end_ms",
            )
        item.audio_ms = end  # the context now holds only what the caller heard
        item.stop_audio = item.streaming
        _append_capped(
            self.truncates,
            {
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": end,
                "produced_ms": produced,
                "while_streaming": item.streaming,
            },
            self._limits.max_records,
        )
        await self.send(
            event("conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=end)
        )

    async def _on_item_delete(self, obj: dict[str, Any], _eid: str | None) -> None:
        item_id = obj.get("item_id")
        if not isinstance(item_id, str) or not self.conversation.delete(item_id):
            raise SchemaError(
                "item_delete_invalid_item_id",
                f"Error deleting item: the item with id '{item_id}' does not exist.",
                "item_id",
            )
        await self.send(event("conversation.item.deleted", item_id=item_id))

    async def _on_item_retrieve(self, obj: dict[str, Any], _eid: str | None) -> None:
        item_id = obj.get("item_id")
        item = self.conversation.get(item_id) if isinstance(item_id, str) else None
        if item is None:
            raise SchemaError(
                "item_retrieve_invalid_item_id",
                f"Item with item_id not found: {item_id}",
                "item_id",
            )
        await self.send(event("conversation.item.retrieved", item=item.to_json()))

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
        _append_capped(self.responses, record, self._limits.max_records)
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
