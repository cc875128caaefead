"""One simulated GPT-Live session on one websocket: the event contract, the turns, usage.

It shares the Realtime simulator's pieces (``Scenario`` for the script, ``EnergyVad`` on
the audio timeline, the synthetic voice, the G.711/PCM codecs) and speaks GPT-Live's
events (see protocol/gpt_live.py for the sources):

- ``session.start`` first; then ``session.started {session}``. Anything else before it is
  refused (error code ``session_not_started``: the simulator's wording).
- The server drives turns: when the caller stops speaking it answers with the next
  scripted turn; it is full duplex, so caller audio keeps flowing while it speaks, and
  when the caller starts speaking over it, it stops sending audio (the simulator's
  simplification of "the model decides": a bridge cannot truncate, it can only stop
  playing what it buffered).
- ``session.input_transcript.delta`` / ``session.output_transcript.delta`` {delta,
  start_ms, end_ms} on the session timeline (ms of caller audio appended);
  ``session.output_audio.delta {delta}`` (no timestamps, no event_id on a primary socket).
- Tools: with ``responses`` delegation a scripted tool call becomes
  ``session.delegation.created`` + ``response.event {delegation_id, event:
  response.output_item.done {item: function_call}}``; the next turn is spoken after a
  ``function_call_output`` per call (``response.item.create``) and ``response.create``.
  With ``client`` delegation it becomes ``session.delegation.created`` only, answered by
  ``session.commentary.append`` with that ``delegation_id`` (spoken as given).
- ``session.usage.updated {usage: {seconds}}``: cumulative, every ``USAGE_EVERY_MS`` of
  session audio; ``session.close`` -> ``session.closed {reason, session, usage}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from agi_bridge.simulator import synth
from agi_bridge.simulator.codec import AudioFormat
from agi_bridge.simulator.events import event, new_id
from agi_bridge.simulator.live import schema
from agi_bridge.simulator.scenario import Scenario, Turn
from agi_bridge.simulator.schema import SchemaError
from agi_bridge.simulator.vad import EnergyVad

log = logging.getLogger("agi_bridge.simulator.live")

USAGE_EVERY_MS = 10_000
MAX_RECORDS = 10_000
MAX_APPEND_BYTES = 15 * 1024 * 1024


def _format(fmt: dict[str, Any]) -> AudioFormat:
    out = AudioFormat(str(fmt["type"]))
    out.rate = int(fmt["rate"])  # audio/pcm may be 16 kHz on GPT-Live
    return out


class LiveSession:
    def __init__(self, ws: ServerConnection, scenario: Scenario, notify: Callable[[], None]):
        self._ws = ws
        self._notify = notify
        self.scenario = scenario
        self.id = new_id("sess")
        self.session: dict[str, Any] | None = None  # set by session.start
        # observation
        self.received: list[dict[str, Any]] = []
        self.received_counts: Counter[str] = Counter()
        self.sent_counts: Counter[str] = Counter()
        self.errors_sent: list[dict[str, Any]] = []
        self.spoken: list[str] = []  # what was said, turn by turn (cut at an interruption)
        self.interruptions = 0
        self.function_outputs: list[dict[str, Any]] = []
        self.commentary: list[str] = []
        self.caller_audio_ms = 0.0
        self.closed = False
        self.close_reason = ""
        # state
        self._timeline_ms = 0.0
        self._usage_reported_ms = 0
        self._vad: EnergyVad | None = None
        self._in_fmt: AudioFormat | None = None
        self._out_fmt: AudioFormat | None = None
        self._turn_index = 0
        self._speech_start_ms = 0
        self._speaking: asyncio.Task[None] | None = None
        self._stop_speaking = False
        self._pending_calls: dict[str, str] = {}  # call_id -> delegation_id
        self._client_delegations: set[str] = set()
        self._last_output = ""
        self._tg: asyncio.TaskGroup | None = None

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                try:
                    async for message in self._ws:
                        await self._handle(message)
                finally:
                    if self._speaking is not None:
                        self._speaking.cancel()
        except* ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._notify()

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "error":
            self.errors_sent.append(message)
            del self.errors_sent[:-MAX_RECORDS]
        self.sent_counts[kind] += 1
        await self._ws.send(json.dumps(message, separators=(",", ":")))
        self._notify()

    async def _error(self, exc: SchemaError, client_event_id: str | None) -> None:
        err: dict[str, Any] = {
            "type": "invalid_request_error",
            "code": exc.code,
            "message": exc.message,
            "param": exc.param,
        }
        if client_event_id:
            err["client_event_id"] = client_event_id
        await self.send(event("error", error=err))

    # -------------------------------------------------------------------- input

    async def _handle(self, message: str | bytes) -> None:
        try:
            obj = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            await self._error(SchemaError("invalid_json", "The message is not JSON."), None)
            return
        if not isinstance(obj, dict):
            await self._error(SchemaError("invalid_json", "Expected a JSON object."), None)
            return
        eid = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
        kind = str(obj.get("type"))
        self.received_counts[kind] += 1
        record = {**obj, "audio": len(obj["audio"])} if "audio" in obj else obj
        self.received.append(record)
        del self.received[:-MAX_RECORDS]
        try:
            kind = schema.check_client_event(obj)
            if self.session is None and kind != "session.start":
                raise SchemaError(
                    "session_not_started", "Send session.start and wait for session.started."
                )
            await getattr(self, "_on_" + kind.replace(".", "_"))(obj)
        except SchemaError as exc:
            await self._error(exc, eid)
        self._notify()

    async def _on_session_start(self, obj: dict[str, Any]) -> None:
        if self.session is not None:
            raise SchemaError("session_already_started", "The session has already started.")
        start = schema.check_session_start(obj["session"])
        self.session = {
            "id": self.id,
            "object": "live.session",
            "status": "active",
            "expires_at": int(time.time() + self.scenario.max_session_ms / 1000),
            **start,
        }
        self._in_fmt = _format(start["audio"]["input"]["format"])
        self._out_fmt = _format(start["audio"]["output"]["format"])
        self._vad = EnergyVad(self._in_fmt.rate, threshold_dbfs=self.scenario.vad_threshold_dbfs)
        await self.send(event("session.started", session=self.session))
        if self.scenario.greeting:
            self._start_speaking(self.scenario.greeting)

    async def _on_session_update(self, obj: dict[str, Any]) -> None:
        assert self.session is not None
        self.session = schema.check_session_update(self.session, obj["session"])
        await self.send(event("session.updated", session=self.session))

    async def _on_session_input_audio_append(self, obj: dict[str, Any]) -> None:
        assert self._in_fmt is not None and self._vad is not None
        try:
            data = base64.b64decode(obj["audio"], validate=True)
        except (binascii.Error, ValueError):
            raise SchemaError(
                "invalid_value", "Invalid 'audio'. Expected base64-encoded audio.", "audio"
            ) from None
        if len(data) > MAX_APPEND_BYTES:
            raise SchemaError("invalid_value", "Invalid 'audio': too large.", "audio")
        samples = self._in_fmt.decode(data)
        ms = len(samples) * 1000 / self._in_fmt.rate
        self.caller_audio_ms += ms
        self._timeline_ms += ms
        for vad_event in self._vad.feed(samples):
            if vad_event.kind == "start":
                self._speech_start_ms = vad_event.ms
                if self._speaking is not None and not self._speaking.done():
                    self.interruptions += 1
                    self._stop_speaking = True  # full duplex: it yields to the caller
            else:
                await self._caller_turn_ended(vad_event.ms)
        while self._timeline_ms - self._usage_reported_ms >= USAGE_EVERY_MS:
            self._usage_reported_ms += USAGE_EVERY_MS
            await self.send(event("session.usage.updated", usage=self._usage()))

    async def _on_session_input_audio_mute(self, obj: dict[str, Any]) -> None:
        pass  # the simulator keeps counting time: muting does not stop billing

    async def _on_session_input_audio_unmute(self, obj: dict[str, Any]) -> None:
        pass

    async def _appended(self, kind: str) -> None:
        now = round(self._timeline_ms)
        await self.send(event(kind, start_ms=now, end_ms=now))

    async def _on_session_instructions_append(self, obj: dict[str, Any]) -> None:
        await self._appended("session.instructions.appended")

    async def _on_session_thinking_append(self, obj: dict[str, Any]) -> None:
        await self._appended("session.thinking.appended")

    async def _on_session_commentary_append(self, obj: dict[str, Any]) -> None:
        self.commentary.append(obj["content"])
        await self._appended("session.commentary.appended")
        if obj["delegation_id"] in self._client_delegations:
            self._client_delegations.discard(obj["delegation_id"])
        self._start_speaking(obj["content"])

    def _require_responses(self, kind: str) -> None:
        assert self.session is not None
        if self.session["delegation"]["type"] != "responses":
            # message as a live session answered it (a published spike log, Oct 2026)
            raise SchemaError("invalid_value", f"{kind} requires Responses delegation.")

    async def _on_response_item_create(self, obj: dict[str, Any]) -> None:
        self._require_responses("response.item.create")
        item = obj["item"]
        if item.get("type") == "function_call_output":
            schema.reject_unknown(item, {"type", "call_id", "output"}, "item")
            call_id = item.get("call_id")
            if call_id not in self._pending_calls:
                raise SchemaError(
                    "invalid_value", f"No function call with call_id {call_id!r}.", "item.call_id"
                )
            output = schema.require_string(item.get("output"), "item.output")
            del self._pending_calls[call_id]
            self.function_outputs.append(item)
            self._last_output = output

    async def _on_response_create(self, obj: dict[str, Any]) -> None:
        self._require_responses("response.create")
        if self._pending_calls:
            missing = ", ".join(self._pending_calls)
            raise SchemaError("invalid_value", f"No tool output found for: {missing}.")
        self._start_speaking(self._fill(self._next_turn().text))

    async def _on_session_close(self, obj: dict[str, Any]) -> None:
        if self._speaking is not None:
            self._speaking.cancel()
        self.close_reason = "close_requested"
        await self.send(
            event(
                "session.closed",
                reason="close_requested",
                session=self.session,
                usage=self._usage(),
            )
        )
        await self._ws.close(1000, "session closed")

    # ------------------------------------------------------------------- turns

    def _usage(self) -> dict[str, Any]:
        return {"seconds": round(self._timeline_ms / 1000, 3)}

    def _next_turn(self) -> Turn:
        turns = self.scenario.turns
        if self._turn_index < len(turns):
            self._turn_index += 1
            return turns[self._turn_index - 1]
        return Turn(self.scenario.default_reply)

    def _fill(self, text: str) -> str:
        return text.replace("{output}", self._last_output)

    async def _caller_turn_ended(self, end_ms: int) -> None:
        turns = self.scenario.turns
        upcoming = turns[self._turn_index] if self._turn_index < len(turns) else None
        said = upcoming.caller_text if upcoming and upcoming.caller_text else None
        heard = said or f"[caller spoke for {(end_ms - self._speech_start_ms) / 1000:.1f} s]"
        await self.send(
            event(
                "session.input_transcript.delta",
                delta=heard,
                start_ms=self._speech_start_ms,
                end_ms=end_ms,
            )
        )
        turn = self._next_turn()
        if turn.text:
            self._start_speaking(self._fill(turn.text))
        if turn.tool_calls:
            await self._delegate(turn, end_ms)

    async def _delegate(self, turn: Turn, offset_ms: int) -> None:
        assert self.session is not None
        target = self.session["delegation"]["type"]
        delegation: dict[str, Any] = {"type": "delegation", "id": new_id("del"), "target": target}
        if target == "responses":
            delegation["response_id"] = new_id("resp")
        await self.send(
            event("session.delegation.created", delegation=delegation, offset_ms=offset_ms)
        )
        if target != "responses":
            self._client_delegations.add(delegation["id"])
            return
        for i, call in enumerate(turn.tool_calls):
            call_id = call.call_id or new_id("call")
            self._pending_calls[call_id] = delegation["id"]
            item = {
                "type": "function_call",
                "id": new_id("fc"),
                "call_id": call_id,
                "name": call.name,
                "arguments": json.dumps(call.arguments),
                "status": "completed",
            }
            nested = {"type": "response.output_item.done", "output_index": i, "item": item}
            await self.send(event("response.event", delegation_id=delegation["id"], event=nested))

    def _start_speaking(self, text: str) -> None:
        assert self._tg is not None
        if self._speaking is not None and not self._speaking.done():
            self._speaking.cancel()  # a new turn replaces what was still being said
        self._stop_speaking = False
        self._speaking = self._tg.create_task(self._speak(text))

    async def _speak(self, text: str) -> None:
        assert self._out_fmt is not None
        sc, fmt = self.scenario, self._out_fmt
        started, sent_ms, said = time.monotonic(), 0.0, ""
        with contextlib.suppress(ConnectionClosed):
            if sc.response_latency_ms:
                await asyncio.sleep(sc.response_latency_ms / 1000)
            for i, (chunk, words) in enumerate(
                synth.stream(text, sc.ms_per_char, fmt.rate, sc.chunk_ms)
            ):
                if self._stop_speaking:
                    break
                payload = base64.b64encode(fmt.encode(chunk)).decode("ascii")
                await self.send({"type": "session.output_audio.delta", "delta": payload})
                if words:
                    now = round(self._timeline_ms)
                    said += words
                    await self.send(
                        event(
                            "session.output_transcript.delta", delta=words, start_ms=now, end_ms=now
                        )
                    )
                sent_ms += len(chunk) * 1000 / fmt.rate
                if sc.speed != float("inf") and i + 1 >= sc.burst_chunks:
                    due = started + sent_ms / sc.speed / 1000
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
        self.spoken.append(said.strip())
        del self.spoken[:-MAX_RECORDS]
        self._notify()
