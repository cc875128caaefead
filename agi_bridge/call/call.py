"""One phone call: the AudioSocket stream, the Realtime session, the playout, the tools.

A ``Call`` owns everything of its call and runs it in one ``asyncio.TaskGroup``
(ARCHITECTURE rule 2): the caller pump (AudioSocket -> Realtime), the Realtime pump
(events -> playout, barge-in, tools), the playout pump (one 20 ms frame per deadline to
Asterisk) and any running tools. When one of them fails or the call ends, the others are
cancelled and ``finally`` closes both sides. State changes go through one table
(rule 3) and are logged once.

Who ends the call decides what Asterisk does next:
- the caller hung up: nothing to send, Asterisk already closed the socket;
- the agent hung up (tool): ``AGI_BRIDGE_STATUS=completed`` is set over AMI, then the
  AudioSocket hangup frame; the dialplan sees "completed" and hangs up;
- the bridge failed (Realtime unreachable, fatal error, malformed stream): hangup frame
  only, so the dialplan continues to its fallback (message, operator, voicemail);
- the agent transferred the call (tool): AMI Redirect moves the channel elsewhere in the
  dialplan and Asterisk closes the socket itself: no hangup frame, no "completed";
- an operator hung up (admin interface): like the agent hanging up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import enum
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from agi_bridge import audio
from agi_bridge.config import Agent, Config, TransferTarget
from agi_bridge.digits import MASK, DigitCollector
from agi_bridge.errors import (
    AmiError,
    AudioSocketError,
    BridgeError,
    RealtimeError,
    RealtimeProtocolError,
    ToolError,
)
from agi_bridge.playout import Pacer, PlayoutBuffer, Released
from agi_bridge.protocol import audiosocket as asock
from agi_bridge.protocol import realtime as rt
from agi_bridge.realtime import Connector, RealtimeSession
from agi_bridge.samples import Samples
from agi_bridge.tools import IVR_GUIDANCE, ToolSet

log = logging.getLogger(__name__)

# After the last frame of the goodbye has left, the phone's jitter buffer still holds a
# few tens of ms; hanging up at once would cut the final syllable.
HANGUP_TAIL_S = 0.3
# Asterisk reads AudioSocket continuously; this much unsent output means it stopped.
MAX_WRITE_BACKLOG = 64 * 1024
INPUT_BATCH_BYTES = 320  # µ-law bytes per input_audio_buffer.append: 40 ms
# A Local channel whose far side waits in WaitExten()/Read() (a phone menu reached with
# `agi-bridge call Local/...`) sends no frames at all, and the Realtime VAD runs on the
# appended audio: it would never hear a prompt end. After this long without audio from
# Asterisk the bridge appends that much silence instead (a phone's RTP never stops).
CALLER_GAP_S = 0.2
STATUS_VARIABLE = "AGI_BRIDGE_STATUS"


class State(enum.Enum):
    CONNECTING = "connecting"  # AudioSocket up, Realtime session being opened
    ACTIVE = "active"  # conversation running
    ENDING = "ending"  # tearing down
    ENDED = "ended"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.CONNECTING: frozenset({State.ACTIVE, State.ENDING}),
    State.ACTIVE: frozenset({State.ENDING}),
    State.ENDING: frozenset({State.ENDED}),
    State.ENDED: frozenset(),
}


class EndReason(enum.Enum):
    CALLER_HANGUP = "caller_hangup"
    AGENT_HANGUP = "agent_hangup"
    REALTIME_FAILED = "realtime_failed"
    PROTOCOL_ERROR = "protocol_error"
    MAX_DURATION = "max_duration"
    SHUTDOWN = "shutdown"
    INTERNAL_ERROR = "internal_error"
    TRANSFERRED = "transferred"  # AMI Redirect moved the caller elsewhere in the dialplan
    OPERATOR_HANGUP = "operator_hangup"  # the admin interface ended the call


class CallMeta(Protocol):
    """Call identity registered by the FastAGI server (see asterisk/agi.py)."""

    @property
    def channel(self) -> str: ...

    @property
    def caller_id(self) -> str: ...

    @property
    def dnid(self) -> str: ...

    @property
    def agent(self) -> str | None: ...


class CallAmi(Protocol):
    """The AMI actions a call uses (implemented by asterisk.ami.AmiClient)."""

    @property
    def connected(self) -> bool: ...

    async def play_dtmf(self, channel: str, digit: str, duration_ms: int) -> None: ...

    async def setvar(self, channel: str, variable: str, value: str) -> None: ...

    async def redirect(self, channel: str, context: str, exten: str, priority: int = 1) -> None: ...


class _Stop(Exception):
    """Raised inside the TaskGroup to end the call once its end reason is set."""


class IllegalTransition(BridgeError):
    pass


class CallNotActive(BridgeError):
    """An operator action on a call that is not in conversation (connecting or ending)."""


Observer = Callable[["Call", str, dict[str, Any]], None]


class AudioRecorder(Protocol):
    """Optional audio tap of a call (``Call.recorder``, see records.WavRecorder).

    Called on the 20 ms path: once per caller frame received (8 kHz slin16) and once per
    frame released to Asterisk (with the pacer's running count of skipped frames). It
    must be cheap and must not raise.
    """

    def caller_audio(self, pcm: bytes) -> None: ...

    def agent_frame(self, pcm: bytes, skipped: int) -> None: ...


@dataclass
class CallStats:
    """Counters of one call (sizes and times, never audio)."""

    frames_in: int = 0
    frames_out: int = 0
    audio_frames_out: int = 0
    late_frames: int = 0
    skipped_frames: int = 0
    underruns: int = 0
    dropped_ms: float = 0.0
    caller_gap_fill_ms: float = 0.0  # silence appended while Asterisk sent no audio
    appends_sent: int = 0
    truncates_sent: int = 0
    barge_ins: int = 0
    tool_calls: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    # bounded samples for latency figures (ms)
    turn_latency_ms: Samples = field(default_factory=lambda: Samples(256))
    delta_to_frame_ms: Samples = field(default_factory=lambda: Samples(256))
    frame_to_send_ms: Samples = field(default_factory=lambda: Samples(1024))
    # monotonic write time of the last frames to Asterisk (30 s), for pacing figures
    frame_times: Samples = field(default_factory=lambda: Samples(1500))


def build_session(cfg: Config, agent: Agent, tools: ToolSet, today: dt.date) -> rt.SessionConfig:
    """The Realtime session for an agent: µ-law both ways, today's date, IVR guidance."""
    instructions = f"Today is {today:%A, %B %d, %Y}.\n\n{agent.instructions.strip()}"
    if agent.ivr_guidance and "send_dtmf" in tools.tools:
        instructions += "\n\n" + IVR_GUIDANCE
    td = agent.turn_detection
    turn: rt.TurnDetection
    if td.type == "server_vad":
        turn = rt.ServerVad(
            threshold=td.threshold,
            prefix_padding_ms=td.prefix_padding_ms,
            silence_duration_ms=td.silence_duration_ms,
            idle_timeout_ms=td.idle_timeout_ms,
            interrupt_response=td.interrupt_response,
        )
    elif td.type == "semantic_vad":
        turn = rt.SemanticVad(eagerness=td.eagerness, interrupt_response=td.interrupt_response)
    else:
        turn = None
    return rt.SessionConfig(
        model=agent.model or cfg.realtime.model,
        instructions=instructions,
        voice=agent.voice,
        speed=agent.speed,
        turn_detection=turn,
        transcription_model=agent.transcription_model or None,
        transcription_language=agent.language or None,
        noise_reduction=agent.noise_reduction or None,
        max_output_tokens=agent.max_output_tokens,
        tools=tools.schemas(),
    )


class Call:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        config: Config,
        connect: Connector,
        claim: Callable[[str], CallMeta | None] | None = None,
        ami: CallAmi | None = None,
        clock: Callable[[], float] = time.monotonic,
        observers: tuple[Observer, ...] = (),
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._config = config
        self._connect = connect
        self._claim = claim
        self._ami = ami
        self._clock = clock
        self._observers = observers
        self.call_id = "-"
        self.meta: CallMeta | None = None
        self.agent_name = ""
        self.agent = config.agents[config.default_agent]
        self.state = State.CONNECTING
        self.end_reason: EndReason | None = None
        self.end_detail = ""
        self.stats = CallStats()
        self.started_at = clock()
        self.recorder: AudioRecorder | None = None  # set by an observer on "start"
        self._log: logging.LoggerAdapter[logging.Logger] = logging.LoggerAdapter(
            log, {"call_id": "-"}
        )
        self._parser = asock.AudioSocketParser()
        self._playout = PlayoutBuffer(config.limits.playout_buffer_ms)
        self._tools = ToolSet()
        self._rt: RealtimeSession | None = None
        self._session: rt.SessionConfig | None = None  # the last session.update sent
        self._audio_produced = False  # the model sent audio in this session (voice is fixed)
        # set just before the AMI Redirect of a transfer: {destination, summary, context, ...}
        self.transfer_info: dict[str, Any] | None = None
        self._stop = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._tasks: asyncio.TaskGroup | None = None
        self._pacer: Pacer | None = None  # created by the playout pump
        # response bookkeeping: at most one response is active on the service side
        self._response_requested = False
        self._active_response: str | None = None
        self._want_response = False
        # barge-in: audio of these responses/items is dropped when it still arrives
        self._cut_responses: deque[str] = deque(maxlen=32)
        self._cut_items: deque[str] = deque(maxlen=64)
        self._streaming_items: set[str] = set()
        self._first_delta_at: dict[str, float] = {}
        self._handled_calls: deque[str] = deque(maxlen=256)  # call_ids already run
        self._caller_transcripts: dict[str, str] = {}
        self._speech_stopped_at: float | None = None
        self._in_batch = bytearray()
        self._batch_started_at = 0.0
        self._resample_state: audio.ResampleState = None
        self._hangup_frame_sent = False
        self._caller_heard_until = 0.0  # clock of the last caller data (or filled silence)
        self._fatal_error = ""  # an error no new session can fix (bad key, quota...)
        self._resumable_error = ""  # e.g. session_expired: the next session carries on
        # the conversation so far, for a resumed session's instructions (bounded)
        self._history: deque[str] = deque(maxlen=40)
        # collect_digits: caller digits go here, masked, not to the model (digits.py)
        self._digits = DigitCollector()
        self._digits_changed = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    def _set_state(self, new: State) -> None:
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"call {self.call_id}: {self.state.value} -> {new.value}")
        self._log.info("state %s -> %s", self.state.value, new.value)
        self.state = new

    def end(self, reason: EndReason, detail: str = "") -> None:
        """Ask the call to end (idempotent: the first reason wins)."""
        if self.transfer_info is not None and reason is EndReason.CALLER_HANGUP:
            # Asterisk closing the socket after our Redirect is the transfer completing
            reason, detail = EndReason.TRANSFERRED, f"to {self.transfer_info['destination']}"
        if self.end_reason is None:
            self.end_reason = reason
            self.end_detail = detail
        self._stop.set()

    @property
    def duration_s(self) -> float:
        return self._clock() - self.started_at

    async def run(self) -> None:
        """Run the call to its end. Never raises (except cancellation of the caller)."""
        try:
            await self._read_uuid()
            self._emit(
                "start",
                agent=self.agent_name,
                channel=self.meta.channel if self.meta else "",
                caller=self.meta.caller_id if self.meta else "",
                dnid=self.meta.dnid if self.meta else "",
            )
            async with asyncio.TaskGroup() as tg:
                self._tasks = tg
                tg.create_task(self._supervise())
                tg.create_task(self._pump_playout())
                tg.create_task(self._pump_caller())
                tg.create_task(self._fill_caller_gaps())
                tg.create_task(self._run_session())
        except* _Stop:
            pass
        except* (AudioSocketError, RealtimeProtocolError) as group:
            self.end(EndReason.PROTOCOL_ERROR, _first(group))
        except* RealtimeError as group:
            self.end(EndReason.REALTIME_FAILED, _first(group))
        except* (ConnectionError, asyncio.IncompleteReadError) as group:
            self.end(EndReason.CALLER_HANGUP, f"connection lost: {_first(group)}")
        except* Exception as group:
            self._log.error("internal error", exc_info=group.exceptions[0])
            self.end(EndReason.INTERNAL_ERROR, _first(group))
        finally:
            await self._finish()

    async def _read_uuid(self) -> None:
        timeout = self._config.limits.first_frame_timeout_s
        try:
            await asyncio.wait_for(self._read_first_frames(), timeout)
        except TimeoutError:
            raise AudioSocketError(f"no UUID frame within {timeout:.0f} s") from None

    async def _read_first_frames(self) -> None:
        while True:
            data = await self._reader.read(4096)
            if not data:
                raise ConnectionError("closed before the UUID frame")
            events = self._parser.feed(data)
            if not events:
                continue
            first = events[0]
            if not isinstance(first, asock.Uuid):
                raise AudioSocketError(f"first frame must be the UUID, got {first!r:.60}")
            break
        self.call_id = str(first.value)
        self._log = logging.LoggerAdapter(log, {"call_id": self.call_id})
        self.meta = self._claim(self.call_id) if self._claim else None
        if self.meta is None and self._claim is not None:
            self._log.info("no FastAGI registration for this UUID: default agent, no AMI tools")
        self.agent_name, self.agent = self._config.agent(self.meta.agent if self.meta else None)
        self._tools = ToolSet.for_agent(self._config, self.agent_name)
        self._handle_caller_events(events[1:])

    async def _supervise(self) -> None:
        try:
            async with asyncio.timeout(self._config.limits.max_call_s):
                await self._stop.wait()
        except TimeoutError:
            self.end(EndReason.MAX_DURATION, f"{self._config.limits.max_call_s:.0f} s")
        raise _Stop

    async def _finish(self) -> None:
        if self.state is not State.ENDING:
            self._set_state(State.ENDING)
        reason = self.end_reason or EndReason.SHUTDOWN
        if reason is EndReason.TRANSFERRED and self.transfer_info is not None:
            self._emit("transfer", **self.transfer_info)
        try:
            if reason in (EndReason.AGENT_HANGUP, EndReason.OPERATOR_HANGUP):
                await self._mark_completed()
            if reason not in (EndReason.CALLER_HANGUP, EndReason.TRANSFERRED):
                # after a transfer the channel is elsewhere in the dialplan: a hangup frame
                # (or "completed") would be wrong, and Asterisk closes the socket itself
                self._send_hangup_frame()
        finally:
            # close the socket first: whatever happens to the awaits below (a second
            # cancellation at shutdown), Asterisk gets its socket back and the end is recorded
            self._writer.close()
            try:
                if self._rt is not None:
                    try:
                        await asyncio.wait_for(self._rt.close(), 3)
                    except (TimeoutError, BridgeError, OSError) as exc:
                        self._log.debug("closing Realtime: %s", exc)
                with contextlib.suppress(TimeoutError, OSError):
                    await asyncio.wait_for(self._writer.wait_closed(), 2)
            finally:
                self._record_end(reason)

    def _record_end(self, reason: EndReason) -> None:
        self.stats.late_frames, self.stats.skipped_frames = self._pacer_counts
        self._set_state(State.ENDED)
        self._log.info(
            "ended: %s%s after %.1f s (frames out %d, audio %d, late %d, truncates %d)",
            reason.value,
            f" ({self.end_detail})" if self.end_detail else "",
            self.duration_s,
            self.stats.frames_out,
            self.stats.audio_frames_out,
            self.stats.late_frames,
            self.stats.truncates_sent,
        )
        self._emit("end", reason=reason.value, detail=self.end_detail)

    async def _mark_completed(self) -> None:
        """Tell the dialplan the agent finished the call (so it hangs up, no fallback)."""
        if self._ami is None or self.meta is None or not self.meta.channel:
            return
        try:
            await self._ami.setvar(self.meta.channel, STATUS_VARIABLE, "completed")
        except AmiError as exc:
            self._log.warning("could not set %s over AMI: %s", STATUS_VARIABLE, exc)

    def _send_hangup_frame(self) -> None:
        if self._hangup_frame_sent or self._writer.is_closing():
            return
        self._hangup_frame_sent = True
        self._writer.write(asock.hangup_frame())

    # ------------------------------------------------------------ caller -> model

    async def _pump_caller(self) -> None:
        while True:
            data = await self._reader.read(8192)
            self._caller_heard_until = self._clock()
            if not data:
                self.end(EndReason.CALLER_HANGUP, "AudioSocket closed")
                return
            self._handle_caller_events(self._parser.feed(data))
            if len(self._in_batch) >= INPUT_BATCH_BYTES:
                await self._flush_caller_audio()

    def _handle_caller_events(self, events: list[asock.Event]) -> None:
        for ev in events:
            if isinstance(ev, asock.Audio):
                self.stats.frames_in += 1
                pcm = ev.pcm
                if ev.rate != audio.SAMPLE_RATE:
                    pcm, self._resample_state = audio.resample_to_8k(
                        pcm, ev.rate, self._resample_state
                    )
                if self.recorder is not None:
                    self.recorder.caller_audio(pcm)
                if self._rt is None or self.state is not State.ACTIVE:
                    continue  # nothing to hear it yet; old audio would only confuse the VAD
                if not self._in_batch:
                    self._batch_started_at = self._clock()
                self._in_batch += audio.slin_to_ulaw(pcm)
            elif isinstance(ev, asock.Dtmf):
                self._on_caller_dtmf(ev.digit)
            elif isinstance(ev, asock.Hangup):
                self.end(EndReason.CALLER_HANGUP, "hangup frame")
            elif isinstance(ev, asock.Uuid):
                self._log.warning("ignoring a second UUID frame %s", ev.value)
            elif isinstance(ev, asock.Error):
                self.end(EndReason.PROTOCOL_ERROR, f"error frame from Asterisk {ev.payload!r}")

    async def _fill_caller_gaps(self) -> None:
        """Append silence while Asterisk sends no audio (see CALLER_GAP_S); a few wake-ups
        a second, so a phone call whose RTP never stops costs next to nothing."""
        self._caller_heard_until = self._clock()
        while True:
            await asyncio.sleep(CALLER_GAP_S)
            now = self._clock()
            gap = now - self._caller_heard_until
            if gap < CALLER_GAP_S:
                continue
            self._caller_heard_until = now
            if self._rt is None or self.state is not State.ACTIVE:
                continue
            if not self._in_batch:
                self._batch_started_at = now
            ms = min(int(gap * 1000), 1000) // audio.FRAME_MS * audio.FRAME_MS
            self._in_batch += audio.ulaw_silence(ms)
            self.stats.caller_gap_fill_ms += ms
            await self._flush_caller_audio()

    async def _flush_caller_audio(self) -> None:
        if self._rt is None:
            self._in_batch.clear()
            return
        chunk = bytes(self._in_batch)
        self._in_batch.clear()
        try:
            await self._rt.send(rt.input_audio_append(chunk))
        except RealtimeError:
            return  # the session pump sees the loss too, and resumes or ends the call
        self.stats.appends_sent += 1
        # the oldest frame in the batch waited this long before it left for the model
        self.stats.frame_to_send_ms.append((self._clock() - self._batch_started_at) * 1000)

    def _on_caller_dtmf(self, digit: str) -> None:
        if self._digits.feed(digit, self._clock()):
            self._emit("caller_dtmf", digit=MASK, masked=True)  # records show the mask
            self._digits_changed.set()
            return
        self._emit("caller_dtmf", digit=digit)
        if not self.agent.caller_dtmf_to_model or self._rt is None:
            return
        self._spawn(self._send_caller_dtmf(digit))

    async def _send_caller_dtmf(self, digit: str) -> None:
        if self._rt is None:
            return
        with contextlib.suppress(RealtimeError):  # a lost session resumes or ends the call
            await self._rt.send(rt.user_text(f"[caller pressed {digit}]"))
            await self._request_response()

    # ------------------------------------------------------------ model -> caller

    async def _run_session(self) -> None:
        """Open the Realtime session and pump its events; resume it when it expires/drops.

        A resumed session is a new conversation on the service side: it gets the agent's
        instructions plus the transcript so far, while the caller's line stays up (the
        playout keeps its 20 ms cadence in between).
        """
        reconnects = 0
        while True:
            try:
                reason = await self._one_session(resumed=reconnects > 0)
            except RealtimeError as exc:
                reason = str(exc)
                if self._rt is None and reconnects == 0:
                    self.end(EndReason.REALTIME_FAILED, reason)  # never connected
                    return
            if self._stop.is_set():
                return
            if self._fatal_error or reconnects >= self._config.realtime.max_reconnects:
                self.end(EndReason.REALTIME_FAILED, self._fatal_error or reason)
                return
            reconnects += 1
            self._log.warning("Realtime session lost (%s): resuming (%d)", reason, reconnects)
            self._emit("reconnect", reason=reason, attempt=reconnects)
            await self._drop_session()
            await asyncio.sleep(min(2.0, 0.25 * 2**reconnects))

    async def _one_session(self, *, resumed: bool) -> str:
        """Run one Realtime session to its end; returns why it ended."""
        self._rt = await self._connect(self.agent.model or self._config.realtime.model)
        session = build_session(self._config, self.agent, self._tools, dt.date.today())
        if resumed and self._history:
            session = dataclasses.replace(
                session,
                instructions=session.instructions
                + "\n\n# This call is already under way\nThe connection was renewed; "
                "continue the conversation without greeting again. Transcript so far:\n"
                + "\n".join(self._history),
            )
        self._session = session
        self._audio_produced = False
        await self._rt.send(rt.session_update(session))
        if self.state is State.CONNECTING:
            self._set_state(State.ACTIVE)
        if self.agent.greeting and not resumed:
            # response.instructions replaces the session's for that response: keep the
            # agent's persona, language and date, and add what to say first
            await self._request_response(f"{session.instructions}\n\n# Now\n{self.agent.greeting}")
        async for event in self._rt.events():
            await self._on_event(event)
        return self._resumable_error or "Realtime session closed by the server"

    async def _drop_session(self) -> None:
        """Forget the per-session state of a lost session (its responses, its audio)."""
        old, self._rt = self._rt, None
        self._resumable_error = ""
        self._response_requested = False
        self._active_response = None
        self._want_response = False
        self._streaming_items.clear()
        self._in_batch.clear()
        if old is not None:
            with contextlib.suppress(TimeoutError, BridgeError, OSError):
                await asyncio.wait_for(old.close(), 3)

    async def _on_event(self, ev: rt.ServerEvent) -> None:
        if isinstance(ev, rt.AudioDelta):
            self._on_audio_delta(ev)
        elif isinstance(ev, rt.SpeechStarted):
            await self._on_speech_started(ev)
        elif isinstance(ev, rt.SpeechStopped):
            self._speech_stopped_at = self._clock()
            self._emit("speech_stopped", item_id=ev.item_id)
        elif isinstance(ev, rt.ResponseCreated):
            self._response_requested = False
            self._active_response = ev.response_id
        elif isinstance(ev, rt.AudioDone):
            self._streaming_items.discard(ev.item_id)
        elif isinstance(ev, rt.FunctionCall):
            self._dispatch_tool(ev)
        elif isinstance(ev, rt.ResponseDone):
            await self._on_response_done(ev)
        elif isinstance(ev, rt.TranscriptionDelta):
            if len(self._caller_transcripts) < 64 or ev.item_id in self._caller_transcripts:
                self._caller_transcripts[ev.item_id] = (
                    self._caller_transcripts.get(ev.item_id, "") + ev.delta
                )
        elif isinstance(ev, rt.TranscriptionCompleted):
            text = ev.transcript or self._caller_transcripts.get(ev.item_id, "")
            self._caller_transcripts.pop(ev.item_id, None)
            self._log.info("caller: %s", text)
            self._history.append(f"Caller: {text[:500]}")
            self._emit("caller_transcript", item_id=ev.item_id, text=text)
        elif isinstance(ev, rt.TranscriptionFailed):
            self._caller_transcripts.pop(ev.item_id, None)
            self._log.warning("caller transcription failed: %s", ev.message)
        elif isinstance(ev, rt.AudioTranscriptDone):
            self._log.info("agent: %s", ev.transcript)
            self._history.append(f"You: {ev.transcript[:500]}")
            self._emit("agent_transcript", item_id=ev.item_id, text=ev.transcript)
        elif isinstance(ev, rt.ErrorEvent):
            self._on_error(ev)
        elif isinstance(ev, rt.SessionUpdated):
            self._log.debug("session updated")
        elif isinstance(ev, rt.UnknownEvent):
            self._log.debug("ignoring Realtime event %s", ev.type)

    def _on_audio_delta(self, ev: rt.AudioDelta) -> None:
        self._audio_produced = True
        if ev.response_id in self._cut_responses or ev.item_id in self._cut_items:
            return  # audio of a response the caller interrupted, still in flight
        if ev.item_id not in self._first_delta_at:
            if len(self._first_delta_at) >= 64:
                self._first_delta_at.clear()
            self._first_delta_at[ev.item_id] = self._clock()
        self._streaming_items.add(ev.item_id)
        dropped = self._playout.push(ev.item_id, audio.ulaw_to_slin(ev.audio))
        self._drained.clear()
        if dropped:
            self.stats.dropped_ms += dropped
            self._log.warning("playout buffer full: dropped %.0f ms of agent audio", dropped)

    async def _on_speech_started(self, ev: rt.SpeechStarted) -> None:
        self._emit("speech_started", item_id=ev.item_id)
        if self.agent.turn_detection.type != "none":
            # the service answers the caller's turn itself (create_response); a deferred
            # response.create from before would talk over the caller or collide
            self._want_response = False
        if not self.agent.turn_detection.interrupt_response or not self._playout.audible:
            return
        # barge-in: the caller talks over the agent. The service cancels its response
        # itself (interrupt_response); the bridge stops the audio it already has.
        self.stats.barge_ins += 1
        await self._cut_playout("barge_in", cancel=False)

    async def _cut_playout(self, event: str, *, cancel: bool) -> dict[str, Any]:
        """Stop the agent's audio now and tell the model how much of its item was heard.

        Shared by barge-in and the operator's interrupt. Clears the playout buffer, drops
        the rest of the cut response's audio when it still arrives, with ``cancel`` sends
        ``response.cancel`` (only while a response is active: the service answers an
        error otherwise), and truncates the item at the ms actually released to Asterisk.
        Emits *event* with item_id, audio_end_ms and dropped_ms, and returns them.
        """
        item = self._playout.current_item
        cleared = self._playout.clear()
        self._drained.set()
        self._cut_items.extend(cleared.items)
        active = self._active_response
        if active:
            self._cut_responses.append(active)
        heard_ms = self._playout.released_ms(item) if item else 0
        self._log.info(
            "%s: cleared %.0f ms of agent audio, heard %d ms of %s",
            event.replace("_", "-"),
            cleared.dropped_ms,
            heard_ms,
            item,
        )
        data: dict[str, Any] = {
            "item_id": item,
            "audio_end_ms": heard_ms,
            "dropped_ms": cleared.dropped_ms,
        }
        self._emit(event, **data)
        if cancel:
            self._want_response = False  # a deferred response.create would talk again
            if active and self._rt is not None:
                await self._rt.send(rt.response_cancel())
                data["cancelled_response"] = active
        if item and heard_ms > 0 and self._rt is not None:
            await self._rt.send(rt.item_truncate(item, heard_ms))
            self.stats.truncates_sent += 1
        return data

    async def _on_response_done(self, ev: rt.ResponseDone) -> None:
        if self._active_response == ev.response_id or not ev.response_id:
            self._active_response = None
        self._add_usage(ev.usage)
        self._emit("response_done", response_id=ev.response_id, status=ev.status, usage=ev.usage)
        if ev.status in ("completed", "incomplete", ""):
            for fc in ev.function_calls():
                self._dispatch_tool(fc)
        if self._want_response and not self._response_active:
            self._want_response = False
            await self._request_response()

    def _on_error(self, ev: rt.ErrorEvent) -> None:
        self._log.warning(
            "Realtime error %s (%s): %s%s%s",
            ev.code or "-",
            ev.type or "-",
            ev.message,
            f" param={ev.param}" if ev.param else "",
            f" caused by event {ev.event_id}" if ev.event_id else "",
        )
        self._emit("realtime_error", code=ev.code, message=ev.message)
        if ev.code == "conversation_already_has_active_response":
            self._want_response = True  # ask again when the active one is done
        if ev.code in rt.RESUMABLE_ERROR_CODES:
            self._resumable_error = f"{ev.code}: {ev.message}"  # the server closes next
        elif ev.code in rt.FATAL_ERROR_CODES:
            self._fatal_error = f"{ev.code}: {ev.message}"
            self.end(EndReason.REALTIME_FAILED, self._fatal_error)

    @property
    def _response_active(self) -> bool:
        return self._response_requested or self._active_response is not None

    async def _request_response(self, instructions: str | None = None) -> None:
        """``response.create`` now, or as soon as the active response is done."""
        if self._rt is None:
            return
        if self._response_active:
            self._want_response = True
            return
        self._response_requested = True
        await self._rt.send(rt.response_create(instructions))

    def _add_usage(self, usage: dict[str, Any]) -> None:
        def add(key: str, value: Any) -> None:
            if isinstance(value, int) and not isinstance(value, bool):
                self.stats.usage[key] = self.stats.usage.get(key, 0) + value

        for key in ("input_tokens", "output_tokens", "total_tokens"):
            add(key, usage.get(key))
        for group in ("input_token_details", "output_token_details"):
            details = usage.get(group)
            if isinstance(details, dict):
                prefix = group.split("_")[0]
                for key, value in details.items():
                    add(f"{prefix}_{key}", value)

    # --------------------------------------------------------------------- playout

    async def _pump_playout(self) -> None:
        pacer = self._pacer = Pacer(self._clock)
        write = self._writer.write
        while not self._writer.is_closing():
            for _ in range(pacer.due()):
                released = self._playout.next_frame()
                write(asock.audio_frame(released.pcm))
                if self.recorder is not None:
                    self.recorder.agent_frame(released.pcm, pacer.skipped_frames)
                now = self._clock()
                self.stats.frame_times.append(now)
                self._on_released(released, now)
            if self._writer.transport.get_write_buffer_size() > MAX_WRITE_BACKLOG:
                raise AudioSocketError("Asterisk stopped reading AudioSocket (64 KiB backlog)")
            delay = pacer.next_deadline - self._clock()
            await asyncio.sleep(delay if delay > 0 else 0)

    @property
    def _pacer_counts(self) -> tuple[int, int]:
        pacer = self._pacer
        return (pacer.late_frames, pacer.skipped_frames) if pacer else (0, 0)

    def _on_released(self, released: Released, now: float) -> None:
        self.stats.frames_out += 1
        if released.silent:
            if self._streaming_items:
                self.stats.underruns += 1  # the model is still sending, we ran dry
            self._drained.set()
            return
        self.stats.audio_frames_out += 1
        for item in released.items:
            first = self._first_delta_at.pop(item, None)
            if first is None:
                continue
            self.stats.delta_to_frame_ms.append((now - first) * 1000)
            if self._speech_stopped_at is not None:
                latency = (now - self._speech_stopped_at) * 1000
                self.stats.turn_latency_ms.append(latency)
                self._speech_stopped_at = None
                self._emit("turn_latency", item_id=item, ms=round(latency, 1))
        if not self._playout.audible:
            self._drained.set()

    async def wait_drained(self, timeout: float) -> bool:
        """Wait until every queued agent frame has been released to Asterisk."""
        try:
            async with asyncio.timeout(timeout):
                while self._playout.audible:
                    self._drained.clear()
                    await self._drained.wait()
        except TimeoutError:
            return False
        return True

    # ----------------------------------------------------------------------- tools

    def _dispatch_tool(self, fc: rt.FunctionCall) -> None:
        if not fc.call_id or not fc.name or fc.call_id in self._handled_calls:
            # the service reports a call in several events: act once, on one that names
            # the tool (some compatible servers leave the name out of arguments.done)
            return
        if fc.response_id and fc.response_id in self._cut_responses:
            # the caller interrupted that response: a hangup or transfer it was about to
            # do was not what the caller heard, so it must not happen
            self._handled_calls.append(fc.call_id)
            self._log.info("ignoring %s of a response the caller interrupted", fc.name)
            return
        self._handled_calls.append(fc.call_id)
        self.stats.tool_calls += 1
        self._spawn(self._run_tool(fc))

    async def _run_tool(self, fc: rt.FunctionCall) -> None:
        self._log.info("tool %s(%s)", fc.name, fc.arguments[:200])
        self._emit("tool_call", name=fc.name, arguments=fc.arguments, call_id=fc.call_id)
        barge_ins = self.stats.barge_ins
        result = await self._tools.run(self, fc.name, fc.arguments)
        self._log.info("tool %s -> %s", fc.name, json.dumps(result)[:200])
        self._emit("tool_result", name=fc.name, result=result, call_id=fc.call_id)
        if self._stop.is_set() or self._rt is None:
            return
        try:
            await self._rt.send(rt.function_call_output(fc.call_id, json.dumps(result)))
            caller_spoke = self.stats.barge_ins != barge_ins
            if (self._tools.continues(fc.name) or not result.get("ok")) and not caller_spoke:
                await self._request_response()
        except RealtimeError as exc:
            # the session is gone (it resumes with the transcript, or the call ends)
            self._log.warning("result of %s not delivered: %s", fc.name, exc)

    def _spawn(self, coro: Any) -> None:
        if self._tasks is None or self._stop.is_set():
            coro.close()
            return
        self._tasks.create_task(coro)

    # CallControls (used by tools)

    async def play_dtmf(self, digit: str) -> None:
        if self._ami is None:
            raise AmiError("DTMF needs AMI, which is not configured")
        if self.meta is None or not self.meta.channel:
            raise AmiError("the channel of this call is unknown (no FastAGI registration)")
        dtmf = self._config.dtmf
        await self._ami.play_dtmf(self.meta.channel, digit, dtmf.duration_ms)
        self._emit("dtmf_sent", digit=digit)
        # PlayDTMF only queues the digit: wait for it to play, then the inter-digit gap
        await asyncio.sleep((dtmf.duration_ms + dtmf.gap_ms) / 1000)

    async def dtmf_pause(self) -> None:
        await asyncio.sleep(self._config.dtmf.pause_ms / 1000)

    async def end_call(self, reason: str) -> None:
        self._log.info("agent hangs up: %s", reason)
        await self._play_out_last_sentence(self._config.limits.hangup_drain_timeout_s, "hangup")
        self.end(EndReason.AGENT_HANGUP, reason)

    async def _play_out_last_sentence(self, timeout: float, action: str) -> None:
        """Wait until the caller has heard the agent's last words (hangup, transfer).

        A caller who talks over them ("wait, one more thing") cancels the action: the
        ToolError goes back to the model, which answers the caller instead.
        """
        barge_ins = self.stats.barge_ins
        if not await self.wait_drained(timeout):
            self._log.warning("audio still queued after the %s drain timeout", action)
        await asyncio.sleep(HANGUP_TAIL_S)
        if self.stats.barge_ins != barge_ins:
            self._log.info("%s cancelled: the caller interrupted the agent's last words", action)
            raise ToolError(f"{action} cancelled: the caller started speaking; answer them")

    async def transfer(self, name: str, target: TransferTarget, summary: str) -> None:
        """Play out the current sentence, then move the caller with AMI Redirect.

        After a successful Redirect Asterisk takes the channel out of AudioSocket() and
        closes the socket; the call then ends as TRANSFERRED (see ``end``), without a
        hangup frame. If the close does not come within ``transfer_close_timeout_s`` the
        call ends anyway. Raises AmiError (the call goes on) when the Redirect fails.
        """
        if self._ami is None:
            raise AmiError("transfer needs AMI, which is not configured")
        if self.meta is None or not self.meta.channel:
            raise AmiError("the channel of this call is unknown (no FastAGI registration)")
        limits = self._config.limits
        self._log.info(
            "transfer to %s (%s,%s,%d); summary: %s",
            name,
            target.context,
            target.exten,
            target.priority,
            summary or "-",
        )
        await self._play_out_last_sentence(limits.transfer_drain_timeout_s, "transfer")
        # Set before the Redirect: Asterisk may close the socket before AMI answers.
        self.transfer_info = {
            "destination": name,
            "summary": summary,
            "context": target.context,
            "exten": target.exten,
            "priority": target.priority,
        }
        try:
            await self._ami.redirect(
                self.meta.channel, target.context, target.exten, target.priority
            )
        except AmiError as exc:
            self.transfer_info = None
            self._log.warning("transfer to %s failed: %s", name, exc)
            raise
        try:
            async with asyncio.timeout(limits.transfer_close_timeout_s):
                await self._stop.wait()
        except TimeoutError:
            self._log.warning(
                "Asterisk did not close AudioSocket within %.1f s of the Redirect",
                limits.transfer_close_timeout_s,
            )
            self.end(EndReason.TRANSFERRED, f"to {name} (socket not closed by Asterisk)")

    async def switch_agent(self, name: str) -> None:
        """Hand the conversation to another configured agent (session.update)."""
        if name not in self._config.agents:
            raise ToolError(f"no agent named {name!r}")
        previous = self.agent_name
        self.agent_name, self.agent = name, self._config.agents[name]
        self._tools = ToolSet.for_agent(self._config, name)
        await self._update_session()
        self._log.info("agent switched: %s -> %s", previous, name)
        self._emit("agent_switch", agent=name, previous=previous)

    async def collect_digits(self, max_digits: int, terminator: str, timeout_s: float) -> str:
        """The digits the caller types next (tools.collect_digits_tool); never logged."""
        try:
            self._digits.start(
                self._clock(), max_digits=max_digits, terminator=terminator, timeout_s=timeout_s
            )
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        try:
            while self._digits.active and not self._digits.expired(self._clock()):
                deadline = self._digits.next_deadline()
                wait = max(0.0, (deadline or self._clock()) - self._clock())
                self._digits_changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait + 0.01):
                        await self._digits_changed.wait()
        finally:
            done = self._digits.take()
        digits = done.digits if done else ""
        self._log.info("collected %d digits (%s)", len(digits), done.ended if done else "cancelled")
        return digits

    def call_info(self) -> dict[str, str]:
        """Who this call is (webhook tools send it along with their arguments)."""
        meta = self.meta
        return {
            "call_id": self.call_id,
            "agent": self.agent_name,
            "caller_id": meta.caller_id if meta else "",
            "dnid": meta.dnid if meta else "",
            "channel": meta.channel if meta else "",
        }

    async def _update_session(self) -> None:
        """Send the current agent's session (instructions, tools, turn detection...)."""
        if self._rt is None:
            raise CallNotActive("the Realtime session is not open")
        session = build_session(self._config, self.agent, self._tools, dt.date.today())
        if self._session is not None:
            # the model is chosen when the session is opened (it is in the URL)
            session = dataclasses.replace(session, model=self._session.model)
            if self._audio_produced:
                # The Realtime API rejects a voice change once the model has produced audio
                # in the session (cannot_update_voice): keep the voice the caller has heard.
                session = dataclasses.replace(session, voice=self._session.voice)
        self._session = session
        await self._rt.send(rt.session_update(session))

    # ------------------------------------------------------------ operator controls

    def info(self) -> dict[str, Any]:
        """What the admin interface lists about a live call."""
        ident = self.call_info()
        return {
            "id": ident["call_id"],
            "agent": ident["agent"],
            "caller": ident["caller_id"],
            "dnid": ident["dnid"],
            "channel": ident["channel"],
            "state": self.state.value,
            "duration_s": round(self.duration_s, 1),
        }

    def _live_session(self) -> RealtimeSession:
        if self.state is not State.ACTIVE or self._rt is None or self._stop.is_set():
            raise CallNotActive(f"call {self.call_id} is {self.state.value}")
        return self._rt

    async def say(self, text: str, role: Literal["user", "system"] = "user") -> None:
        """Operator: add a message to the conversation, then let the model answer."""
        session = self._live_session()
        event = rt.user_text(text) if role == "user" else rt.system_text(text)
        await session.send(event)
        self._log.info("operator %s message (%d chars)", role, len(text))
        self._emit("operator_message", role=role, text=text)
        await self._request_response()

    async def interrupt(self) -> dict[str, Any]:
        """Operator: stop the agent now (the same cut as a barge-in, plus response.cancel)."""
        self._live_session()
        return await self._cut_playout("operator_interrupt", cancel=True)

    async def set_instructions(self, instructions: str) -> None:
        """Operator: replace this call's instructions (session.update, live)."""
        self._live_session()
        self.agent = dataclasses.replace(self.agent, instructions=instructions)
        await self._update_session()
        self._log.info("operator replaced the instructions (%d chars)", len(instructions))
        self._emit("instructions_replaced", chars=len(instructions))

    def hangup(self, reason: str = "operator") -> None:
        """Operator: end the call now, like the agent's hangup (AGI_BRIDGE_STATUS=completed)."""
        if self.state is State.ENDED:
            raise CallNotActive(f"call {self.call_id} has ended")
        self._log.info("operator hangs up: %s", reason)
        self.end(EndReason.OPERATOR_HANGUP, reason)

    # ----------------------------------------------------------------- observation

    def _emit(self, kind: str, **data: Any) -> None:
        for observer in self._observers:
            try:
                observer(self, kind, data)
            except Exception:  # an observer bug must not end the call
                self._log.exception("observer failed on %s", kind)


def _first(group: BaseExceptionGroup[Any]) -> str:
    exc = group.exceptions[0]
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"
