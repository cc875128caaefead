"""The input-audio side of a simulated Realtime session: appends decoded onto the audio
timeline, turn detection (energy VAD, server/semantic), commits, clears, the caller's
transcript with its usage, and server VAD's idle timeout (a mixin of ``SimSession``).

Usage of an input transcription is reported on ``...input_audio_transcription.completed``
as ``{"type": "duration", "seconds"}`` (openai-python
conversation_item_input_audio_transcription_completed_event.py: billed at the ASR
model's price, not the realtime model's).
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from agi_bridge.simulator.codec import AudioFormat
from agi_bridge.simulator.conversation import Conversation, ConvItem
from agi_bridge.simulator.events import event, new_id
from agi_bridge.simulator.idle import IdleTimer
from agi_bridge.simulator.item_events import Limits
from agi_bridge.simulator.scenario import Scenario
from agi_bridge.simulator.schema import SchemaError, check_response
from agi_bridge.simulator.vad import EnergyVad, VadEvent, threshold_dbfs

if TYPE_CHECKING:
    from agi_bridge.simulator.responses import ResponseRun

MAX_APPEND_BYTES = 15 * 1024 * 1024  # the service's limit per input_audio_buffer.append
MIN_COMMIT_MS = 100  # the service refuses to commit less
SEMANTIC_SILENCE_MS = {"low": 800, "medium": 500, "high": 250, "auto": 500}
TRANSCRIPT_WORDS_PER_DELTA = 3


class InputEvents:
    """Handlers for ``input_audio_buffer.*``; state lives in SimSession."""

    scenario: Scenario
    session: dict[str, Any]
    conversation: Conversation
    caller_audio_bytes: int
    caller_audio_ms: float
    caller_audio: bytearray
    caller_audio_rate: int
    speech_started_count: int
    speech_stopped_count: int
    committed_count: int
    _limits: Limits
    _in_fmt: AudioFormat
    _timeline_ms: float
    _buffer_start_ms: float
    _speech_item: str | None
    _speech_start_ms: int
    _vad: EnergyVad | None
    _idle: IdleTimer
    _active: ResponseRun | None
    _turn_index: int
    _caller_spoke: bool

    async def send(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    async def _cancel_active(self, reason: str) -> None:
        raise NotImplementedError

    async def _start_response(self, trigger: str, settings: dict[str, Any]) -> None:
        raise NotImplementedError

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
        await self._check_idle()

    async def _check_idle(self) -> None:
        td = self._turn_detection
        self._idle.timeout_ms = td.get("idle_timeout_ms") if td else None
        if self._active is not None or self._speech_item is not None:
            return
        due = self._idle.due(self._timeline_ms)
        if due is None:
            return
        item_id = new_id("item")
        await self.send(
            event(
                "input_audio_buffer.timeout_triggered",
                audio_start_ms=due[0],
                audio_end_ms=due[1],
                item_id=item_id,
            )
        )
        assert td is not None
        await self._commit(
            item_id, due[1] - self._buffer_start_ms, due[1], auto=td["create_response"]
        )

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
            self._idle.disarm()
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
