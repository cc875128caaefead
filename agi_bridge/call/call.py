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
from typing import Any

from agi_bridge import audio
from agi_bridge.call.actions import CallActions
from agi_bridge.call.caller_input import CallerInput
from agi_bridge.call.conversation import Conversation, Emit, EndCall, FlushMedia, Output, RunTool
from agi_bridge.call.dtmf import DtmfGate
from agi_bridge.call.events import OUTCOMES, TRANSITIONS, EndReason, Observer, State
from agi_bridge.call.playout_pump import PlayoutPump
from agi_bridge.call.ports import (
    CallIdentity,
    ChannelControl,
    MediaFormat,
    MediaPort,
    Outcome,
)
from agi_bridge.call.session_watch import ROLLOVER, SessionWatch
from agi_bridge.call.stats import AudioRecorder, CallStats
from agi_bridge.config import Config
from agi_bridge.digits import DigitCollector
from agi_bridge.errors import (
    BridgeError,
    MediaError,
    RealtimeError,
    RealtimeProtocolError,
)
from agi_bridge.playout import Pacer, PlayoutBuffer
from agi_bridge.prompt_context import prompt_context
from agi_bridge.providers import base as p

log = logging.getLogger("agi_bridge.call")

STATUS_VARIABLE = "AGI_BRIDGE_STATUS"
RELEASE_TIMEOUT_S = 5.0


class _Stop(Exception):
    """Raised inside the TaskGroup to end the call once its end reason is set."""


class _Stalled(RealtimeError):
    """The session is open but owes an event it does not send (resumed like a drop)."""


class IllegalTransition(BridgeError):
    pass


class Call(CallActions, CallerInput, PlayoutPump):
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
            context={
                **prompt_context(identity.caller_id, identity.dnid, identity.variables),
                "channel": identity.channel,
            },
            far_end_queued_ms=media.queued_ms,
        )
        self._provider: p.ProviderSession | None = None
        # set just before the channel is moved by a transfer: {destination, summary, ...}
        self.transfer_info: dict[str, Any] | None = None
        self._dtmf = DtmfGate(clock)
        # collect_digits: caller digits go here, masked, not to the model (digits.py)
        self._digits = DigitCollector()
        self._digits_changed = asyncio.Event()
        self._dtmf_pressed = asyncio.Event()
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
                tg.create_task(self._pump_dtmf())
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

    # ------------------------------------------------------------ model -> caller

    async def _run_session(self) -> None:
        """Open the provider session and pump its events; resume it when it expires/drops.

        A resumed session is a new conversation on the service side: it gets the agent's
        instructions plus the transcript so far, while the caller's line stays up (the
        playout keeps its 20 ms cadence in between).
        """
        conv = self.conversation
        reconnects = 0
        stalled = resumed = False
        while True:
            try:
                reason = await self._one_session(resumed=resumed, answer=stalled)
                stalled = False
                if reason == ROLLOVER:
                    self._log.info("Realtime session renewed at a pause (%s)", reason)
                    self._emit("reconnect", reason="rollover", attempt=reconnects)
                    await self._drop_session()
                    resumed = True
                    continue
            except _Stalled as exc:
                reason, stalled = str(exc), True
            except RealtimeError as exc:
                reason, stalled = str(exc), False
                if self._provider is None and reconnects == 0:
                    self.end(EndReason.REALTIME_FAILED, reason)  # never connected
                    return
            if self._stop.is_set():
                return
            if conv.fatal_error or reconnects >= self._config.realtime.max_reconnects:
                self.end(EndReason.REALTIME_FAILED, conv.fatal_error or reason)
                return
            reconnects += 1
            resumed = True
            self._log.warning("Realtime session lost (%s): resuming (%d)", reason, reconnects)
            self._emit("reconnect", reason=reason, attempt=reconnects)
            await self._drop_session()
            if not stalled:  # a stalled caller waits already: resume at once
                await asyncio.sleep(min(2.0, 0.25 * 2**reconnects))

    async def _one_session(self, *, resumed: bool, answer: bool = False) -> str:
        """Run one provider session to its end; returns why it ended (ROLLOVER: renew it
        now, at a pause). Raises _Stalled when the session owes an event and sends none
        for ``stall_timeout_s``.

        One task reads and handles the session's events (``_read_session``); a timer, not
        a wake-up per event, watches it: the timer looks at the time of the last event
        when it fires and moves itself on when events came meanwhile. An event then costs
        no task and no wait of its own (an audio delta is most of them)."""
        conv = self.conversation
        self._provider = await self._connect(conv.model)
        opening = conv.open_session(resumed=resumed, answer=answer)
        await self._apply(opening[:1])  # the session's configuration first
        if self.state is State.CONNECTING:
            self._set_state(State.ACTIVE)
        await self._apply(opening[1:])
        watch = SessionWatch(
            self._clock,
            stall_s=self._config.realtime.stall_timeout_s,
            rollover_at=self._clock() + (self._config.realtime.rollover_after_s or float("inf")),
            owed=lambda: conv.response.busy,
            playing=lambda: conv.playout.audible,
        )
        reader = asyncio.ensure_future(self._read_session(self._provider, watch))
        watch.start(reader)
        try:
            return await reader
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if (task is not None and task.cancelling()) or watch.verdict is None:
                raise  # the call itself is being cancelled
            if watch.verdict == ROLLOVER:
                return ROLLOVER
            raise _Stalled(f"Realtime stalled: no event for {watch.stall_s:g} s") from None
        finally:
            watch.stop()
            reader.cancel()

    async def _read_session(self, provider: p.ProviderSession, watch: SessionWatch) -> str:
        conv = self.conversation
        async for event in provider.events():
            now = self._clock()
            watch.saw(event, now)
            outputs = conv.on_event(event, now)
            if outputs:
                watch.applying = True  # the watchdog never cuts a batch of outputs in half
                try:
                    await self._apply(outputs)
                finally:
                    watch.applying = False
                    watch.last_event_at = self._clock()  # a stall counts from ready again
            if conv.playout.audible:
                self._drained.clear()
            elif watch.pause_for_rollover(self._clock()):
                return ROLLOVER  # a pause: nobody talks, nothing plays, nothing owed
            watch.rearm()
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
            await self._apply(self.conversation.tool_finished(fc, result, self._clock()))
        except RealtimeError as exc:
            # the session is gone (it resumes with the transcript, or the call ends)
            self._log.warning("result of %s not delivered: %s", fc.name, exc)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._tasks is None or self._stop.is_set():
            coro.close()
            return
        self._tasks.create_task(coro)

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
