"""One response, from ``response.created`` to ``response.done``, streamed like the service.

Audio goes out faster than real time and in bursts (``burst_chunks`` chunks back to back,
then a sleep until the audio timeline divided by ``speed`` catches up), because that is
what a bridge must cope with: it has to buffer and pace the audio itself.

A run is stopped cooperatively (``stop()``): it notices before its next event, closes the
item it was in (status ``incomplete``) and sends ``response.done`` with status
``cancelled`` itself, so every event of a response comes from one task in order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from agi_bridge.simulator import synth
from agi_bridge.simulator.codec import AudioFormat
from agi_bridge.simulator.conversation import Conversation, ConvItem
from agi_bridge.simulator.events import event, new_id
from agi_bridge.simulator.scenario import Scenario, ToolCall
from agi_bridge.simulator.usage import Context

UNKNOWN_EVENT_EVERY = 5  # chunks between made-up events when send_unknown_events is on
ARGUMENT_DELTA_CHARS = 16


class Host(Protocol):
    """What a response needs from its session."""

    scenario: Scenario
    conversation: Conversation

    async def send(self, message: dict[str, Any]) -> None: ...

    def register_call(self, call_id: str, name: str) -> None: ...

    def response_finished(self, run: ResponseRun) -> dict[str, Any]: ...


@dataclass(slots=True)
class ResponseRecord:
    """What a test reads about a response (``SimSession.responses``)."""

    id: str
    trigger: str  # "client" (response.create) or "turn_detection" (auto after a commit)
    script: str  # "greeting", "turn 0", "turn 1"..., or "default"
    text: str
    tool_calls: list[str] = field(default_factory=list)  # call ids
    item_ids: list[str] = field(default_factory=list)
    status: str = "in_progress"
    status_details: dict[str, Any] | None = None
    audio_ms: float = 0.0  # assistant audio sent, all items
    item_audio_ms: dict[str, float] = field(default_factory=dict)  # per audio item
    usage: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ResponseParams:
    """The effective settings: the session's, overridden by ``response.create``."""

    out_format: AudioFormat
    voice: str
    modality: str  # "audio" | "text"
    in_conversation: bool
    max_output_tokens: int | str
    metadata: Any = None


class ResponseRun:
    def __init__(
        self,
        host: Host,
        record: ResponseRecord,
        calls: tuple[ToolCall, ...],
        params: ResponseParams,
    ):
        self.host = host
        self.record = record
        self.calls = calls
        self.params = params
        self.stop_reason: str | None = None
        self.incomplete_reason: str | None = None
        self.output: list[ConvItem] = []
        self.out_text_chars = 0
        self._wake = asyncio.Event()
        self.finished = asyncio.Event()
        self.conversation_id = new_id("conv") if params.in_conversation else None
        self._previous: dict[str, str | None] = {}  # item id -> previous_item_id
        self.context = Context()  # what the response reads (set by the session, for usage)

    @property
    def id(self) -> str:
        return self.record.id

    # ----------------------------------------------------------------- control

    def stop(self, reason: str) -> None:
        """Cancel: ``reason`` is the status_details reason (turn_detected, client_cancelled)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._wake.set()

    @property
    def halted(self) -> bool:
        return self.stop_reason is not None or self.incomplete_reason is not None

    async def _sleep(self, seconds: float) -> None:
        """Sleep unless stopped meanwhile (then return at once)."""
        if seconds <= 0:
            await asyncio.sleep(0)  # let the receive loop run even at infinite speed
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    # ---------------------------------------------------------------- the stream

    def response_json(self, status: str) -> dict[str, Any]:
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": self.record.status_details,
            "output": [item.to_json() for item in self.output],
            "conversation_id": self.conversation_id,
            "output_modalities": [self.params.modality],
            "max_output_tokens": self.params.max_output_tokens,
            "audio": {
                "output": {
                    "format": _format_json(self.params.out_format),
                    "voice": self.params.voice,
                }
            },
            "usage": self.record.usage,
            "metadata": self.params.metadata,
        }

    async def begin(self) -> None:
        """Send ``response.created`` (before the caller goes on, so it comes first)."""
        await self.host.send(event("response.created", response=self.response_json("in_progress")))

    async def run(self) -> None:
        """The streaming task body; always ends with ``response.done`` unless the socket died."""
        try:
            sc = self.host.scenario
            if sc.send_unknown_events:
                await self._unknown()
            await self._sleep(sc.response_latency_ms / 1000)
            index = 0
            if self.record.text and not self.halted:
                await self._message(self.record.text, index)
                index += 1
            for call in self.calls:
                if self.halted:
                    break
                await self._function_call(call, index)
                index += 1
            await self._finish()
        finally:
            self.finished.set()

    async def _finish(self) -> None:
        if self.stop_reason is not None:
            status = "cancelled"
            self.record.status_details = {"type": "cancelled", "reason": self.stop_reason}
        elif self.incomplete_reason is not None:
            status = "incomplete"
            self.record.status_details = {"type": "incomplete", "reason": self.incomplete_reason}
        else:
            status = "completed"
        self.record.status = status
        limits = self.host.response_finished(self)  # records usage, frees the session
        await self.host.send(event("response.done", response=self.response_json(status)))
        await self.host.send(limits)

    async def _add_item(self, item: ConvItem, index: int) -> None:
        self.output.append(item)
        self.record.item_ids.append(item.id)
        await self.host.send(
            event(
                "response.output_item.added",
                response_id=self.id,
                output_index=index,
                item=item.to_json(),
            )
        )
        if self.params.in_conversation:
            previous = self.host.conversation.add(item)
            self._previous[item.id] = previous
            await self.host.send(
                event("conversation.item.added", previous_item_id=previous, item=item.to_json())
            )

    async def _close_item(self, item: ConvItem, index: int) -> None:
        item.streaming = False
        item.status = "incomplete" if self.halted or item.stop_audio else "completed"
        await self.host.send(
            event(
                "response.output_item.done",
                response_id=self.id,
                output_index=index,
                item=item.to_json(),
            )
        )
        if self.params.in_conversation:
            await self.host.send(
                event(
                    "conversation.item.done",
                    previous_item_id=self._previous.get(item.id),
                    item=item.to_json(),
                )
            )

    async def _message(self, text: str, index: int) -> None:
        audio = self.params.modality == "audio"
        item = ConvItem(
            new_id("item"),
            "message",
            role="assistant",
            status="in_progress",
            content_type="output_audio" if audio else "output_text",
            streaming=audio,
        )
        await self._add_item(item, index)
        where = {
            "response_id": self.id,
            "item_id": item.id,
            "output_index": index,
            "content_index": 0,
        }
        part: dict[str, Any] = (
            {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        )
        await self.host.send(event("response.content_part.added", **where, part=part))
        if audio:
            await self._stream_audio(item, text, where)
            await self.host.send(event("response.output_audio.done", **where))
            await self.host.send(
                event("response.output_audio_transcript.done", **where, transcript=item.text)
            )
            part = {"type": "audio", "transcript": item.text}
        else:
            for word in synth.plan(text, 1):
                if self.halted:
                    break
                item.text += word.transcript
                self.out_text_chars += len(word.transcript)
                await self.host.send(
                    event("response.output_text.delta", **where, delta=word.transcript)
                )
                await self._sleep(0)
            await self.host.send(event("response.output_text.done", **where, text=item.text))
            part = {"type": "text", "text": item.text}
        await self.host.send(event("response.content_part.done", **where, part=part))
        await self._close_item(item, index)

    async def _stream_audio(self, item: ConvItem, text: str, where: dict[str, Any]) -> None:
        sc = self.host.scenario
        fmt = self.params.out_format
        budget = (
            math.inf
            if self.params.max_output_tokens == "inf"
            else float(self.params.max_output_tokens)
        )
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        chunks = synth.stream(text, sc.ms_per_char, fmt.rate, sc.chunk_ms)
        for n, (samples, words) in enumerate(chunks, start=1):
            if self.halted or item.stop_audio:
                break
            ms = len(samples) * 1000 / fmt.rate
            chars = self.out_text_chars + len(words)
            if math.ceil((self.record.audio_ms + ms) / 50) + math.ceil(chars / 4) > budget:
                self.incomplete_reason = "max_output_tokens"
                break
            if words:  # the transcript of a word goes out with the audio where it starts
                item.text += words
                self.out_text_chars += len(words)
                await self.host.send(
                    event("response.output_audio_transcript.delta", **where, delta=words)
                )
            payload = base64.b64encode(fmt.encode(samples)).decode("ascii")
            # Count before sending: a truncate racing this delta must see it as produced.
            item.produced_ms += ms
            item.audio_ms = item.produced_ms
            self.record.audio_ms += ms
            self.record.item_audio_ms[item.id] = item.produced_ms
            await self.host.send(event("response.output_audio.delta", **where, delta=payload))
            if sc.send_unknown_events and n % UNKNOWN_EVENT_EVERY == 0:
                await self._unknown()
            if n % sc.burst_chunks == 0:
                due = t0 + self.record.audio_ms / 1000 / sc.speed
                await self._sleep(due - loop.time())

    async def _function_call(self, call: ToolCall, index: int) -> None:
        call_id = call.call_id or new_id("call")
        item = ConvItem(
            new_id("item"), "function_call", status="in_progress", call_id=call_id, name=call.name
        )
        self.record.tool_calls.append(call_id)
        await self._add_item(item, index)
        arguments = json.dumps(call.arguments)
        where = {
            "response_id": self.id,
            "item_id": item.id,
            "output_index": index,
            "call_id": call_id,
        }
        for start in range(0, len(arguments), ARGUMENT_DELTA_CHARS):
            if self.halted:
                break
            delta = arguments[start : start + ARGUMENT_DELTA_CHARS]
            item.arguments += delta
            await self.host.send(
                event("response.function_call_arguments.delta", **where, delta=delta)
            )
            await self._sleep(0)
        if not self.halted:
            self.out_text_chars += len(arguments)
            self.host.register_call(call_id, call.name)
            await self.host.send(
                event(
                    "response.function_call_arguments.done",
                    **where,
                    name=call.name,
                    arguments=arguments,
                )
            )
        await self._close_item(item, index)

    async def _unknown(self) -> None:
        # A made-up event type, as the service adds new ones: clients must ignore it.
        await self.host.send(
            event("response.future_thing", response_id=self.id, detail={"simulated": True})
        )


def _format_json(fmt: AudioFormat) -> dict[str, Any]:
    return {"type": fmt.name, "rate": fmt.rate} if fmt.name == "audio/pcm" else {"type": fmt.name}
