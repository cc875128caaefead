"""The caller's side of a call: audio to the provider in 40 ms batches (µ-law, passed
through when the port carries it), silence while Asterisk sends nothing, key presses
(collected digits masked; the rest rate-limited and coalesced per burst). A mixin of
``Call`` (call.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from agi_bridge import audio
from agi_bridge.call.conversation import Conversation, Emit, Output
from agi_bridge.call.dtmf import DtmfGate
from agi_bridge.call.events import EndReason, State
from agi_bridge.call.ports import CallerAudio, CallerDtmf, MediaEnded, MediaPort
from agi_bridge.call.stats import AudioRecorder, CallStats
from agi_bridge.digits import MASK, DigitCollector
from agi_bridge.errors import RealtimeError
from agi_bridge.providers import base as p

INPUT_BATCH_BYTES = 320  # µ-law bytes per appended chunk: 40 ms
# A Local channel whose far side waits in WaitExten()/Read() (a phone menu reached with
# `agi-bridge call Local/...`) sends no frames at all, and the provider's VAD runs on the
# appended audio: it would never hear a prompt end. After this long without audio from
# Asterisk the bridge appends that much silence instead (a phone's RTP never stops).
CALLER_GAP_S = 0.2


class CallerInput:
    """Caller -> provider; ``Call`` provides the attributes declared here."""

    state: State
    stats: CallStats
    recorder: AudioRecorder | None
    conversation: Conversation
    _media: MediaPort
    _clock: Callable[[], float]
    _log: logging.LoggerAdapter[logging.Logger]
    _provider: p.ProviderSession | None
    _ulaw_port: bool
    _in_batch: bytearray
    _batch_started_at: float
    _caller_heard_until: float
    _dtmf: DtmfGate
    _dtmf_pressed: asyncio.Event
    _digits: DigitCollector
    _digits_changed: asyncio.Event

    if TYPE_CHECKING:  # provided by Call (or a sibling mixin): declared for mypy only

        def end(self, reason: EndReason, detail: str = "") -> None: ...

        def _emit(self, kind: str, **data: object) -> None: ...

        async def _apply(self, outputs: list[Output], *, quiet: bool = False) -> None: ...

    async def _pump_caller(self) -> None:
        receive = self._media.receive
        bytes_per_s = audio.SAMPLE_RATE * (1 if self._ulaw_port else audio.SAMPLE_WIDTH)
        while True:
            events = await receive()
            now = self._caller_heard_until = self._clock()
            # Audio that arrives together was spoken a frame apart: a port may hand over
            # two frames per wake-up (AudioSocket's SO_RCVLOWAT), so each frame's arrival
            # is now minus the audio after it, and the latency figures stay true.
            after_s = (
                sum(len(ev.data) for ev in events if isinstance(ev, CallerAudio)) / bytes_per_s
            )
            for ev in events:
                if isinstance(ev, CallerAudio):
                    after_s -= len(ev.data) / bytes_per_s
                    self._on_caller_audio(ev.data, now - max(after_s, 0.0))
                elif isinstance(ev, CallerDtmf):
                    self._on_caller_dtmf(ev.digit)
                elif isinstance(ev, MediaEnded):
                    self.end(EndReason.CALLER_HANGUP, ev.detail)
                    return
            if len(self._in_batch) >= INPUT_BATCH_BYTES:
                await self._flush_caller_audio()

    def _on_caller_dtmf(self, digit: str) -> None:
        if self._digits.feed(digit, self._clock()):
            self._emit("caller_dtmf", digit=MASK, masked=True)  # records show the mask
            self._digits_changed.set()
            return
        if self._dtmf.press(digit):
            for out in self.conversation.caller_dtmf(digit):
                if isinstance(out, Emit):
                    self._emit(out.kind, **out.data)
            self._dtmf_pressed.set()
        elif self._dtmf.dropped % 1000 == 1:  # a flood: one line per thousand
            self._log.warning("caller DTMF over the rate limit: %d dropped", self._dtmf.dropped)

    async def _pump_dtmf(self) -> None:
        """Send the caller's digits to the model, one message per burst (see DtmfGate)."""
        while True:
            await self._dtmf_pressed.wait()
            while (due := self._dtmf.due()) is not None and due > 0:  # noqa: ASYNC110 - a deadline that each press moves
                await asyncio.sleep(due)
            self._dtmf_pressed.clear()
            await self._apply(self.conversation.caller_dtmf_burst(self._dtmf.take()), quiet=True)

    def _on_caller_audio(self, data: bytes, arrived: float) -> None:
        self.stats.frames_in += 1
        if self.recorder is not None:
            self.recorder.caller_audio(audio.ulaw_to_slin(data) if self._ulaw_port else data)
        if self._provider is None or self.state is not State.ACTIVE:
            return  # nothing to hear it yet; old audio would only confuse the VAD
        if not self._in_batch:
            self._batch_started_at = arrived
        self._in_batch += data if self._ulaw_port else audio.slin_to_ulaw(data)

    async def _fill_caller_gaps(self) -> None:
        """Append silence while Asterisk sends no audio (see CALLER_GAP_S); a few wake-ups
        a second, so a phone call whose RTP never stops costs next to nothing."""
        self._caller_heard_until = self._clock()
        while True:
            await asyncio.sleep(CALLER_GAP_S)
            now = self._clock()
            if self.conversation.held_until is not None:
                # the quiet after a keypress ends on time even if the callee says nothing
                await self._apply(self.conversation.release_held(now), quiet=True)
            gap = now - self._caller_heard_until
            if gap < CALLER_GAP_S:
                continue
            self._caller_heard_until = now
            if self._provider is None or self.state is not State.ACTIVE:
                continue
            if not self._in_batch:
                self._batch_started_at = now
            ms = min(int(gap * 1000), 1000) // audio.FRAME_MS * audio.FRAME_MS
            self._in_batch += audio.ulaw_silence(ms)
            self.stats.caller_gap_fill_ms += ms
            await self._flush_caller_audio()

    async def _flush_caller_audio(self) -> None:
        provider = self._provider
        chunk = bytes(self._in_batch)
        self._in_batch.clear()
        if provider is None:
            return
        try:
            await provider.send(p.AppendAudio(chunk))
        except RealtimeError:
            return  # the session pump sees the loss too, and resumes or ends the call
        self.stats.appends_sent += 1
        # the oldest frame in the batch waited this long before it left for the model
        self.stats.frame_to_send_ms.append((self._clock() - self._batch_started_at) * 1000)
