"""One phone call: a media port, a channel control and a provider session, wired to the
conversation rules (conversation.py) in one ``asyncio.TaskGroup`` (ARCHITECTURE rule 2).

The Call knows no transport: the caller pump reads the media port, the playout pump
sends one 20 ms frame per monotonic deadline to it, the session pump feeds provider
events to the conversation and carries out what it returns. When one of them fails or
the call ends, the others are cancelled and ``finally`` releases the channel, closes the
port and the session, and records the end.

Who ends the call decides what Asterisk does next (``ChannelControl.release``):
- the caller hung up: nothing left to tell Asterisk (CALLER_GONE);
- the agent or an operator hung up: status ``completed``, the dialplan hangs up;
- the bridge failed (provider unreachable, fatal error, malformed stream): the dialplan
  runs its fallback (message, operator, voicemail);
- the agent transferred the call: the channel already continues elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from agi_bridge import audio
from agi_bridge.call.conversation import Conversation, Emit, EndCall, FlushMedia, Output, RunTool
from agi_bridge.call.events import CallNotActive, EndReason, Observer, State
from agi_bridge.call.ports import (
    CallerAudio,
    CallerDtmf,
    CallIdentity,
    ChannelControl,
    MediaEnded,
    MediaFormat,
    MediaPort,
    Outcome,
)
from agi_bridge.call.stats import AudioRecorder, CallStats
from agi_bridge.config import Config, TransferTarget
from agi_bridge.errors import (
    BridgeError,
    ControlError,
    MediaError,
    RealtimeError,
    RealtimeProtocolError,
    ToolError,
)
from agi_bridge.playout import Pacer, PlayoutBuffer
from agi_bridge.providers import base as p
from agi_bridge.ticker import shared as shared_ticker

log = logging.getLogger("agi_bridge.call")

# After the last frame of the goodbye has left, the phone's jitter buffer still holds a
# few tens of ms; hanging up at once would cut the final syllable.
HANGUP_TAIL_S = 0.3
INPUT_BATCH_BYTES = 320  # µ-law bytes per appended chunk: 40 ms
# A Local channel whose far side waits in WaitExten()/Read() (a phone menu reached with
# `agi-bridge call Local/...`) sends no frames at all, and the provider's VAD runs on the
# appended audio: it would never hear a prompt end. After this long without audio from
# Asterisk the bridge appends that much silence instead (a phone's RTP never stops).
CALLER_GAP_S = 0.2
STATUS_VARIABLE = "AGI_BRIDGE_STATUS"
RELEASE_TIMEOUT_S = 5.0

TRANSITIONS: dict[State, frozenset[State]] = {
    State.CONNECTING: frozenset({State.ACTIVE, State.ENDING}),
    State.ACTIVE: frozenset({State.ENDING}),
    State.ENDING: frozenset({State.ENDED}),
    State.ENDED: frozenset(),
}

OUTCOMES: dict[EndReason, Outcome] = {
    EndReason.CALLER_HANGUP: Outcome.CALLER_GONE,
    EndReason.AGENT_HANGUP: Outcome.COMPLETED,
    EndReason.OPERATOR_HANGUP: Outcome.COMPLETED,
    EndReason.TRANSFERRED: Outcome.TRANSFERRED,
}  # everything else: FAILED (the dialplan's fallback)


class _Stop(Exception):
    """Raised inside the TaskGroup to end the call once its end reason is set."""


class IllegalTransition(BridgeError):
    pass


class Call:
    def __init__(
        self,
        identity: CallIdentity,
        media: MediaPort,
        control: ChannelControl,
        *,
        config: Config,
        connect: p.ProviderConnector,
        clock: Callable[[], float] = time.monotonic,
        observers: tuple[Observer, ...] = (),
    ) -> None:
        self.identity = identity
        self.call_id = identity.call_id
        self._media = media
        self._control = control
        self._config = config
        self._connect = connect
        self._clock = clock
        self._observers = observers
        self.state = State.CONNECTING
        self.end_reason: EndReason | None = None
        self.end_detail = ""
        self.stats = CallStats()
        self.started_at = clock()
        self.recorder: AudioRecorder | None = None  # set by an observer on "start"
        self._log = logging.LoggerAdapter(log, {"call_id": self.call_id})
        agent_name, agent = config.agent(identity.agent)
        ulaw_port = media.format is MediaFormat.ULAW
        self._ulaw_port = ulaw_port
        self.conversation = Conversation(
            config=config,
            agent_name=agent_name,
            agent=agent,
            playout=PlayoutBuffer(
                config.limits.playout_buffer_ms, sample_width=1 if ulaw_port else 2
            ),
            stats=self.stats,
            # µ-law ports carry the provider's audio as it is: no decode, no re-encode
            decode=bytes if ulaw_port else audio.ulaw_to_slin,
            log=self._log,
        )
        self._provider: p.ProviderSession | None = None
        # set just before the channel is moved by a transfer: {destination, summary, ...}
        self.transfer_info: dict[str, Any] | None = None
        self._stop = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._tasks: asyncio.TaskGroup | None = None
        self._pacer: Pacer | None = None  # created by the playout pump
        self._in_batch = bytearray()
        self._batch_started_at = 0.0
        self._caller_heard_until = 0.0  # clock of the last caller data (or filled silence)

    # ---------------------------------------------------------------- the view

    @property
    def agent_name(self) -> str:
        return self.conversation.agent_name

    @property
    def model(self) -> str:
        return self.conversation.model

    @property
    def duration_s(self) -> float:
        return self._clock() - self.started_at

    def attach_recorder(self, recorder: AudioRecorder | None) -> None:
        self.recorder = recorder

    def call_info(self) -> dict[str, str]:
        """Who this call is (webhook tools send it along with their arguments)."""
        ident = self.identity
        return {
            "call_id": self.call_id,
            "agent": self.agent_name,
            "caller_id": ident.caller_id,
            "dnid": ident.dnid,
            "channel": ident.channel,
        }

    def info(self) -> dict[str, Any]:
        """What the admin interface lists about a live call."""
        ident = self.identity
        return {
            "id": self.call_id,
            "agent": self.agent_name,
            "caller": ident.caller_id,
            "dnid": ident.dnid,
            "channel": ident.channel,
            "transport": ident.transport,
            "state": self.state.value,
            "duration_s": round(self.duration_s, 1),
        }

    # ------------------------------------------------------------------ lifecycle

    def _set_state(self, new: State) -> None:
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"call {self.call_id}: {self.state.value} -> {new.value}")
        self._log.info("state %s -> %s", self.state.value, new.value)
        self.state = new

    def end(self, reason: EndReason, detail: str = "") -> None:
        """Ask the call to end (idempotent: the first reason wins)."""
        if self.transfer_info is not None and reason is EndReason.CALLER_HANGUP:
            # the channel leaving the bridge after our transfer is the transfer completing
            reason, detail = EndReason.TRANSFERRED, f"to {self.transfer_info['destination']}"
        if self.end_reason is None:
            self.end_reason = reason
            self.end_detail = detail
        self._stop.set()

    async def run(self) -> None:
        """Run the call to its end. Never raises (except cancellation of the caller)."""
        ident = self.identity
        self._emit(
            "start",
            agent=self.agent_name,
            channel=ident.channel,
            caller=ident.caller_id,
            dnid=ident.dnid,
            transport=ident.transport,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                self._tasks = tg
                tg.create_task(self._supervise())
                tg.create_task(self._pump_playout())
                tg.create_task(self._pump_caller())
                tg.create_task(self._fill_caller_gaps())
                tg.create_task(self._run_session())
        except* _Stop:
            pass
        except* (MediaError, RealtimeProtocolError) as group:
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
            # release first (status, hangup frame, continue): whatever happens to the awaits
            # below (a second cancellation at shutdown), Asterisk gets its channel back
            outcome = OUTCOMES.get(reason, Outcome.FAILED)
            try:
                await asyncio.wait_for(self._control.release(outcome), RELEASE_TIMEOUT_S)
            except (TimeoutError, BridgeError, OSError) as exc:
                self._log.warning("releasing the channel (%s): %s", outcome.value, exc)
            with contextlib.suppress(TimeoutError, BridgeError, OSError):
                await asyncio.wait_for(self._media.close(), 3)
            if self._provider is not None:
                try:
                    await asyncio.wait_for(self._provider.close(), 3)
                except (TimeoutError, BridgeError, OSError) as exc:
                    self._log.debug("closing the provider session: %s", exc)
        finally:
            self._record_end(reason)

    def _record_end(self, reason: EndReason) -> None:
        pacer = self._pacer
        if pacer is not None:
            self.stats.late_frames, self.stats.skipped_frames = (
                pacer.late_frames,
                pacer.skipped_frames,
            )
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

    # ------------------------------------------------------------ caller -> model

    async def _pump_caller(self) -> None:
        receive = self._media.receive
        while True:
            events = await receive()
            self._caller_heard_until = self._clock()
            for ev in events:
                if isinstance(ev, CallerAudio):
                    self._on_caller_audio(ev.data)
                elif isinstance(ev, CallerDtmf):
                    await self._apply(self.conversation.caller_dtmf(ev.digit), quiet=True)
                elif isinstance(ev, MediaEnded):
                    self.end(EndReason.CALLER_HANGUP, ev.detail)
                    return
            if len(self._in_batch) >= INPUT_BATCH_BYTES:
                await self._flush_caller_audio()

    def _on_caller_audio(self, data: bytes) -> None:
        self.stats.frames_in += 1
        if self.recorder is not None:
            self.recorder.caller_audio(audio.ulaw_to_slin(data) if self._ulaw_port else data)
        if self._provider is None or self.state is not State.ACTIVE:
            return  # nothing to hear it yet; old audio would only confuse the VAD
        if not self._in_batch:
            self._batch_started_at = self._clock()
        self._in_batch += data if self._ulaw_port else audio.slin_to_ulaw(data)

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

    # ------------------------------------------------------------ model -> caller

    async def _run_session(self) -> None:
        """Open the provider session and pump its events; resume it when it expires/drops.

        A resumed session is a new conversation on the service side: it gets the agent's
        instructions plus the transcript so far, while the caller's line stays up (the
        playout keeps its 20 ms cadence in between).
        """
        conv = self.conversation
        reconnects = 0
        while True:
            try:
                reason = await self._one_session(resumed=reconnects > 0)
            except RealtimeError as exc:
                reason = str(exc)
                if self._provider is None and reconnects == 0:
                    self.end(EndReason.REALTIME_FAILED, reason)  # never connected
                    return
            if self._stop.is_set():
                return
            if conv.fatal_error or reconnects >= self._config.realtime.max_reconnects:
                self.end(EndReason.REALTIME_FAILED, conv.fatal_error or reason)
                return
            reconnects += 1
            self._log.warning("Realtime session lost (%s): resuming (%d)", reason, reconnects)
            self._emit("reconnect", reason=reason, attempt=reconnects)
            await self._drop_session()
            await asyncio.sleep(min(2.0, 0.25 * 2**reconnects))

    async def _one_session(self, *, resumed: bool) -> str:
        """Run one provider session to its end; returns why it ended."""
        conv = self.conversation
        self._provider = await self._connect(conv.model)
        opening = conv.open_session(resumed=resumed)
        await self._apply(opening[:1])  # the session's configuration first
        if self.state is State.CONNECTING:
            self._set_state(State.ACTIVE)
        await self._apply(opening[1:])
        clock = self._clock
        apply = self._apply
        async for event in self._provider.events():
            outputs = conv.on_event(event, clock())
            if outputs:
                await apply(outputs)
            if conv.playout.audible:
                self._drained.clear()
        return conv.resumable_error or "Realtime session closed by the server"

    async def _drop_session(self) -> None:
        """Forget the per-session state of a lost session (its responses, its audio)."""
        old, self._provider = self._provider, None
        self.conversation.session_lost()
        self._in_batch.clear()
        if old is not None:
            with contextlib.suppress(TimeoutError, BridgeError, OSError):
                await asyncio.wait_for(old.close(), 3)

    async def _apply(self, outputs: list[Output], *, quiet: bool = False) -> None:
        """Carry out what the conversation decided, in order. With ``quiet`` a lost
        session is ignored (the session pump sees it too and resumes or ends the call)."""
        for out in outputs:
            if isinstance(out, Emit):
                self._emit(out.kind, **out.data)
            elif isinstance(out, RunTool):
                self._spawn(self._run_tool(out.call))
            elif isinstance(out, FlushMedia):
                self._drained.set()
                await self._media.flush()
            elif isinstance(out, EndCall):
                self.end(out.reason, out.detail)
            elif self._provider is not None:
                if quiet:
                    try:
                        await self._provider.send(out)
                    except RealtimeError:
                        return
                else:
                    await self._provider.send(out)

    # --------------------------------------------------------------------- playout

    async def _pump_playout(self) -> None:
        """Release one frame per 20 ms deadline. The frames leave from the process's
        shared tick (agi_bridge/ticker.py: one timer for all calls, no wake-up of this
        task per frame); this task only carries out what a released frame makes the
        conversation decide (rare), and raises what the tick hit."""
        ticker = shared_ticker(self._clock)
        pacer = self._pacer = Pacer(self._clock, t0=ticker.anchor())
        playout = self.conversation.playout
        on_released = self.conversation.on_released
        send = self._media.send_frame
        needs_silence = self._media.needs_silence
        clock = self._clock
        stats = self.stats  # not stats.frame_times: the benchmark swaps it for a window
        pending: list[Output] = []
        failed: list[BaseException] = []
        wake = asyncio.Event()

        def tick(now: float) -> None:
            if failed:
                return
            try:
                for _ in range(pacer.due(now)):
                    released = playout.next_frame()
                    if needs_silence or not released.silent:
                        send(released.pcm)
                    if self.recorder is not None:
                        pcm = released.pcm
                        self.recorder.agent_frame(
                            audio.ulaw_to_slin(pcm) if self._ulaw_port else pcm,
                            pacer.skipped_frames,
                        )
                    now = clock()
                    stats.frame_times.append(now)
                    outputs = on_released(released, now)
                    if outputs:
                        pending.extend(outputs)
                        wake.set()
                    if not playout.audible:
                        self._drained.set()
            except Exception as exc:  # this call's error: raised in its own task below
                failed.append(exc)
                wake.set()

        key = ticker.subscribe(tick)
        try:
            while True:
                await wake.wait()
                wake.clear()
                if failed:
                    raise failed[0]
                outputs, pending[:] = pending[:], []
                await self._apply(outputs, quiet=True)
        finally:
            ticker.unsubscribe(key)

    async def wait_drained(self, timeout: float) -> bool:
        """Wait until every queued agent frame has been released to Asterisk."""
        playout = self.conversation.playout
        try:
            async with asyncio.timeout(timeout):
                while playout.audible:
                    self._drained.clear()
                    await self._drained.wait()
        except TimeoutError:
            return False
        return True

    # ----------------------------------------------------------------------- tools

    async def _run_tool(self, fc: p.ToolCall) -> None:
        self._log.info("tool %s(%s)", fc.name, fc.arguments[:200])
        self._emit("tool_call", name=fc.name, arguments=fc.arguments, call_id=fc.call_id)
        result = await self.conversation.tools.run(self, fc.name, fc.arguments)
        self._log.info("tool %s -> %s", fc.name, json.dumps(result)[:200])
        self._emit("tool_result", name=fc.name, result=result, call_id=fc.call_id)
        if self._stop.is_set() or self._provider is None:
            return
        try:
            await self._apply(self.conversation.tool_finished(fc, result))
        except RealtimeError as exc:
            # the session is gone (it resumes with the transcript, or the call ends)
            self._log.warning("result of %s not delivered: %s", fc.name, exc)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._tasks is None or self._stop.is_set():
            coro.close()
            return
        self._tasks.create_task(coro)

    # CallControls (used by tools)

    async def play_dtmf(self, digit: str) -> None:
        dtmf = self._config.dtmf
        await self._control.send_dtmf(digit, dtmf.duration_ms)
        self._emit("dtmf_sent", digit=digit)
        # the digit is only queued: wait for it to play, then the inter-digit gap
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
        self.conversation.begin_final_words(action)
        if not await self.wait_drained(timeout):
            self._log.warning("audio still queued after the %s drain timeout", action)
        await asyncio.sleep(HANGUP_TAIL_S)
        if self.conversation.final_words_cut(action):
            self._log.info("%s cancelled: the caller interrupted the agent's last words", action)
            raise ToolError(f"{action} cancelled: the caller started speaking; answer them")

    async def transfer(self, name: str, target: TransferTarget, summary: str) -> None:
        """Play out the current sentence, then move the channel in the dialplan.

        Afterwards Asterisk takes the channel away and the media port ends; the call then
        ends as TRANSFERRED (see ``end``). If that does not happen within
        ``transfer_close_timeout_s`` the call ends anyway. Raises ControlError (the call
        goes on) when the move fails.
        """
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
        # set before the move: Asterisk may take the channel before the request returns
        self.transfer_info = {
            "destination": name,
            "summary": summary,
            "context": target.context,
            "exten": target.exten,
            "priority": target.priority,
        }
        try:
            await self._control.transfer(target.context, target.exten, target.priority)
        except ControlError as exc:
            self.transfer_info = None
            self._log.warning("transfer to %s failed: %s", name, exc)
            raise
        try:
            async with asyncio.timeout(limits.transfer_close_timeout_s):
                await self._stop.wait()
        except TimeoutError:
            self._log.warning(
                "Asterisk did not take the channel within %.1f s of the transfer",
                limits.transfer_close_timeout_s,
            )
            self.end(EndReason.TRANSFERRED, f"to {name} (media not closed by Asterisk)")

    async def switch_agent(self, name: str) -> None:
        """Hand the conversation to another configured agent (its session, its tools)."""
        if name not in self._config.agents:
            raise ToolError(f"no agent named {name!r}")
        self._live_session()
        await self._apply(self.conversation.switch_agent(name, self._config.agents[name]))

    # ------------------------------------------------------------ operator controls

    def _live_session(self) -> p.ProviderSession:
        if self.state is not State.ACTIVE or self._provider is None or self._stop.is_set():
            raise CallNotActive(f"call {self.call_id} is {self.state.value}")
        return self._provider

    async def say(self, text: str, role: Literal["user", "system"] = "user") -> None:
        """Operator: add a message to the conversation, then let the model answer."""
        self._live_session()
        await self._apply(self.conversation.operator_message(role, text))

    async def interrupt(self) -> dict[str, Any]:
        """Operator: stop the agent now (the same cut as a barge-in, plus a cancel)."""
        self._live_session()
        outputs, data = self.conversation.cut("operator_interrupt", cancel=True)
        await self._apply(outputs)
        return data

    async def set_instructions(self, instructions: str) -> None:
        """Operator: replace this call's instructions (a live session update)."""
        self._live_session()
        await self._apply(self.conversation.replace_instructions(instructions))

    def hangup(self, reason: str = "operator") -> None:
        """Operator: end the call now, like the agent's hangup (status completed)."""
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
