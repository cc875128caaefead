"""The conversation of one call, sans-I/O: provider events in, commands and actions out.

No sockets, no asyncio, no clock of its own: every method takes what happened (and
``now`` where time matters) and returns what to do, in order. ``Call`` (call.py) carries
the outputs out. This is where the rules of a phone conversation live:

- greeting, and the session (instructions, voice, tools) per agent (session.py);
- at most one response at a time: ``RESPONSE_TABLE`` below, h11 style;
- barge-in: the playout is cleared at once, the far end's queue flushed, and the item
  truncated at exactly the ms released to Asterisk (ARCHITECTURE rule 6);
- tool calls: once per call id, never for a response the caller cut off; after a tool,
  a new response unless the caller spoke meanwhile;
- final words (hangup, transfer): cancelled when the caller talks over them;
- resume: a new session gets the transcript so far.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agi_bridge.call.events import EndReason
from agi_bridge.call.responses import RespEvent, ResponseTracker
from agi_bridge.call.session import build_session
from agi_bridge.call.stats import CallStats
from agi_bridge.config import Agent, Config
from agi_bridge.keypress_quiet import KeypressQuiet
from agi_bridge.playout import PlayoutBuffer, Released
from agi_bridge.prompt_context import substitute
from agi_bridge.protocol.realtime import SessionConfig
from agi_bridge.providers import base as p
from agi_bridge.tools import ToolSet

# ------------------------------------------------------------------------ outputs


@dataclass(frozen=True, slots=True)
class Emit:
    """An event for the observers (records, metrics, monitoring)."""

    kind: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunTool:
    call: p.ToolCall


@dataclass(frozen=True, slots=True)
class FlushMedia:
    """Drop what the far end has queued (after a cut: chan_websocket's FLUSH_MEDIA)."""


@dataclass(frozen=True, slots=True)
class EndCall:
    reason: EndReason
    detail: str


Output = p.Command | Emit | RunTool | FlushMedia | EndCall


# ------------------------------------------------------------------- conversation

MAX_TRANSCRIPT_CHARS = 500  # per line of the resume transcript
IDLE_PROMPT = (
    "The caller has said nothing for a while. In one short sentence, ask whether they are "
    "still there or need anything else."
)
RESUME_NOTE = (
    "\n\n# This call is already under way\nThe connection was renewed; continue the "
    "conversation without greeting again. Transcript so far:\n"
)


class Conversation:
    """The conversation rules of one call (see the module docstring)."""

    def __init__(
        self,
        *,
        config: Config,
        agent_name: str,
        agent: Agent,
        playout: PlayoutBuffer,
        stats: CallStats,
        decode: Callable[[bytes], bytes],
        log: logging.LoggerAdapter[logging.Logger],
        today: Callable[[], dt.date] = dt.date.today,
        context: Mapping[str, str] | None = None,
        far_end_queued_ms: Callable[[], int] = lambda: 0,
    ) -> None:
        # how much released audio the far end holds unplayed (ports.MediaPort.queued_ms)
        self._far_end_queued_ms = far_end_queued_ms
        self._config = config
        # {caller_id}, {dnid}, call variables in the instructions and greeting (safe: see
        # prompt_context.py); unknown placeholders stay as written
        self._context = dict(context or {})
        self.agent_name = agent_name
        self.agent = self._personal(agent)
        self.tools = ToolSet.for_agent(config, agent_name)
        self.playout = playout
        self.stats = stats
        self._decode = decode  # µ-law from the provider -> the media port's format
        self._log = log
        self._today = today
        self.response = ResponseTracker(log)
        self.session: SessionConfig | None = None  # the last session sent
        self._audio_produced = False  # the model spoke in this session: voice is fixed
        self.fatal_error = ""  # no new session can fix it (bad key, quota...)
        self.resumable_error = ""  # e.g. session_expired: the next session carries on
        # barge-in: audio of these responses/items is dropped when it still arrives
        self._cut_responses: deque[str] = deque(maxlen=32)
        self._cut_items: deque[str] = deque(maxlen=64)
        self.streaming_items: set[str] = set()
        self._first_delta_at: dict[str, float] = {}
        self._speech_stopped_at: float | None = None
        self._handled_calls: deque[str] = deque(maxlen=256)  # tool call ids already run
        # tool call id -> the caller spoke while it ran (then no new response after it)
        self._running_tools: dict[str, bool] = {}
        # final words being played before an action (hangup, transfer) -> cut by the caller
        self._final_words: dict[str, bool] = {}
        self._caller_transcripts: dict[str, str] = {}
        self._history: deque[str] = deque(maxlen=40)  # for a resumed session (bounded)
        self.keypress = KeypressQuiet(agent.quiet_after_dtmf_s)
        self.held_until: float | None = None  # a response held by the keypress quiet

    @property
    def model(self) -> str:
        return self._config.model_for(self.agent)

    # ------------------------------------------------------------------ sessions

    def open_session(self, *, resumed: bool, answer: bool = False) -> list[Output]:
        """A new provider session: its configuration, and the greeting on the first one;
        with ``answer`` (the old one stalled while the caller waited) a response at once."""
        self.response.feed(RespEvent.LOST)
        self.resumable_error = ""
        self.streaming_items.clear()
        self._audio_produced = False
        session = build_session(self._config, self.agent, self.tools, self._today())
        if resumed and self._history:
            session = dataclasses.replace(
                session, instructions=session.instructions + RESUME_NOTE + "\n".join(self._history)
            )
        self.session = session
        out: list[Output] = [p.Configure(session)]
        if self.agent.greeting and not resumed:
            # response instructions replace the session's for that response: keep the
            # agent's persona, language and date, and add what to say first
            out += self._want_response(f"{session.instructions}\n\n# Now\n{self.agent.greeting}")
        elif resumed and answer:
            out += self._want_response()
        return out

    def session_lost(self) -> None:
        self.response.feed(RespEvent.LOST)
        self.streaming_items.clear()

    def update_session(self) -> list[Output]:
        """The current agent's session again (switch_agent, operator instructions)."""
        session = build_session(self._config, self.agent, self.tools, self._today())
        if self.session is not None:
            # the model is chosen when the session is opened (it is in the URL)
            session = dataclasses.replace(session, model=self.session.model)
            if self._audio_produced:
                # the Realtime API rejects a voice change once the model has produced
                # audio in the session (cannot_update_voice): keep the voice heard so far
                session = dataclasses.replace(session, voice=self.session.voice)
        self.session = session
        return [p.Configure(session)]

    def _personal(self, agent: Agent) -> Agent:
        """The agent with this call's values in its instructions and greeting."""
        if not self._context:
            return agent
        return dataclasses.replace(
            agent,
            instructions=substitute(agent.instructions, self._context),
            greeting=substitute(agent.greeting, self._context),
        )

    def switch_agent(self, name: str, agent: Agent) -> list[Output]:
        previous = self.agent_name
        self.agent_name, self.agent = name, self._personal(agent)
        self.tools = ToolSet.for_agent(self._config, name)
        out = self.update_session()
        self._log.info("agent switched: %s -> %s", previous, name)
        out.append(Emit("agent_switch", {"agent": name, "previous": previous}))
        return out

    def replace_instructions(self, instructions: str) -> list[Output]:
        self.agent = dataclasses.replace(self.agent, instructions=instructions)
        out = self.update_session()
        self._log.info("operator replaced the instructions (%d chars)", len(instructions))
        out.append(Emit("instructions_replaced", {"chars": len(instructions)}))
        return out

    # -------------------------------------------------------------- provider events

    def on_event(self, ev: p.ProviderEvent, now: float) -> list[Output]:
        if isinstance(ev, p.AudioOut):  # the hot path first
            self._on_audio(ev, now)
            return []
        if isinstance(ev, p.SpeechStarted):
            return self._on_speech_started(ev)
        if isinstance(ev, p.SpeechStopped):
            self._speech_stopped_at = now
            return self._on_speech_stopped(ev)
        if isinstance(ev, p.ResponseStarted):
            self.response.feed(RespEvent.STARTED)
            self.response.active_id = ev.response_id
            return []
        if isinstance(ev, p.AudioOutDone):
            self.streaming_items.discard(ev.item_id)
            return []
        if isinstance(ev, p.ToolCall):
            return self._dispatch_tool(ev)
        if isinstance(ev, p.ResponseEnded):
            return self._on_response_ended(ev)
        if isinstance(ev, p.CallerTranscriptDelta):
            if len(self._caller_transcripts) < 64 or ev.item_id in self._caller_transcripts:
                self._caller_transcripts[ev.item_id] = (
                    self._caller_transcripts.get(ev.item_id, "") + ev.delta
                )
            return []
        if isinstance(ev, p.CallerTranscript):
            return self._on_caller_transcript(ev)
        if isinstance(ev, p.CallerTranscriptFailed):
            self._caller_transcripts.pop(ev.item_id, None)
            self._log.warning("caller transcription failed: %s", ev.message)
            return []
        if isinstance(ev, p.AgentTranscript):
            self._log.info("agent: %s", ev.text)
            self._history.append(f"You: {ev.text[:MAX_TRANSCRIPT_CHARS]}")
            return [Emit("agent_transcript", {"item_id": ev.item_id, "text": ev.text})]
        if isinstance(ev, p.ProviderError):
            return self._on_error(ev)
        if isinstance(ev, p.CallerIdle):
            return self._on_caller_idle(ev)
        if isinstance(ev, p.SessionUsage):
            return [Emit("session_usage", {"seconds": ev.seconds})]
        self._log.debug("ignoring provider event %s", ev.type)
        return []

    def _on_caller_idle(self, ev: p.CallerIdle) -> list[Output]:
        """The caller said nothing for the idle timeout: the agent checks on them, unless
        it is speaking or about to (then the silence is the caller listening), or the
        service answers the silence itself (a second response would collide)."""
        self._log.info("the caller has been silent for the idle timeout")
        out: list[Output] = [Emit("caller_idle", {})]
        if ev.answered or self.playout.audible or self.response.busy or self.session is None:
            return out
        return out + self._want_response(f"{self.session.instructions}\n\n# Now\n{IDLE_PROMPT}")

    def _on_audio(self, ev: p.AudioOut, now: float) -> None:
        self._audio_produced = True
        if ev.response_id in self._cut_responses or ev.item_id in self._cut_items:
            return  # audio of a response the caller interrupted, still in flight
        if ev.item_id not in self._first_delta_at:
            if len(self._first_delta_at) >= 64:
                self._first_delta_at.clear()
            self._first_delta_at[ev.item_id] = now
        self.streaming_items.add(ev.item_id)
        dropped = self.playout.push(ev.item_id, self._decode(ev.audio))
        if dropped:
            self.stats.dropped_ms += dropped
            self._log.warning("playout buffer full: dropped %.0f ms of agent audio", dropped)

    def _on_speech_started(self, ev: p.SpeechStarted) -> list[Output]:
        out: list[Output] = [Emit("speech_started", {"item_id": ev.item_id})]
        if self.agent.turn_detection.type != "none":
            # the service answers the caller's turn itself (create_response); a deferred
            # Respond from before would talk over the caller or collide
            self.response.feed(RespEvent.DROP_WISH)
        if not self.agent.turn_detection.interrupt_response or not self.playout.audible:
            return out
        # barge-in: the caller talks over the agent. The service cancels its response
        # itself (interrupt_response); the bridge stops the audio it already has.
        self.stats.barge_ins += 1
        cut, _ = self.cut("barge_in", cancel=False)
        return out + cut

    def cut(
        self, event: Literal["barge_in", "operator_interrupt"], *, cancel: bool
    ) -> tuple[list[Output], dict[str, Any]]:
        """Stop the agent's audio now and tell the model how much of its item was heard.

        Shared by barge-in and the operator's interrupt. Clears the playout buffer (and
        the far end's queue), drops the rest of the cut response's audio when it still
        arrives, with ``cancel`` cancels the active response (only while one is active:
        the service answers an error otherwise), and truncates the item at the ms
        actually released to Asterisk. Returns the outputs and the cut's figures.
        """
        item = self.playout.current_item
        cleared = self.playout.clear()
        self._cut_items.extend(cleared.items)
        active = self.response.active_id if self.response.busy else ""
        if active:
            self._cut_responses.append(active)
        for call_id in self._running_tools:
            self._running_tools[call_id] = True
        for action in self._final_words:
            self._final_words[action] = True
        released_ms = self.playout.released_ms(item) if item else 0
        # what the far end still held is flushed with the rest: released, never heard
        heard_ms = max(0, released_ms - self._far_end_queued_ms())
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
        out: list[Output] = [FlushMedia(), Emit(event, dict(data))]
        if cancel:
            self.response.feed(RespEvent.DROP_WISH)  # a deferred Respond would talk again
            if active:
                out.append(p.Cancel())
                data["cancelled_response"] = active
        if item and heard_ms > 0:
            out.append(p.Truncate(item, heard_ms))
            self.stats.truncates_sent += 1
        return out, data

    def _on_response_ended(self, ev: p.ResponseEnded) -> list[Output]:
        if self.response.active_id == ev.response_id or not ev.response_id:
            self.response.active_id = ""
        send = self.response.feed(RespEvent.ENDED)
        self.stats.add_usage(dict(ev.usage))
        out: list[Output] = [
            Emit(
                "response_done",
                {"response_id": ev.response_id, "status": ev.status, "usage": dict(ev.usage)},
            )
        ]
        if ev.status in ("completed", "incomplete", ""):
            for fc in ev.tool_calls:
                out += self._dispatch_tool(fc)
        if send:
            out.append(p.Respond())
        return out

    def _on_caller_transcript(self, ev: p.CallerTranscript) -> list[Output]:
        text = ev.text or self._caller_transcripts.get(ev.item_id, "")
        self._caller_transcripts.pop(ev.item_id, None)
        self._log.info("caller: %s", text)
        self._history.append(f"Caller: {text[:MAX_TRANSCRIPT_CHARS]}")
        out: list[Output] = [Emit("caller_transcript", {"item_id": ev.item_id, "text": text})]
        if ev.usage:
            out.append(
                Emit("transcription_usage", {"item_id": ev.item_id, "usage": dict(ev.usage)})
            )
        return out

    def _on_error(self, ev: p.ProviderError) -> list[Output]:
        self._log.warning(
            "Realtime error %s (%s): %s%s%s",
            ev.code or "-",
            ev.kind or "-",
            ev.message,
            f" param={ev.param}" if ev.param else "",
            f" caused by event {ev.event_id}" if ev.event_id else "",
        )
        out: list[Output] = [Emit("realtime_error", {"code": ev.code, "message": ev.message})]
        if ev.response_busy:
            self.response.feed(RespEvent.BUSY)  # ask again when the active one is done
        if ev.resumable:
            self.resumable_error = f"{ev.code}: {ev.message}"  # the server closes next
        elif ev.fatal:
            self.fatal_error = f"{ev.code}: {ev.message}"
            out.append(EndCall(EndReason.REALTIME_FAILED, self.fatal_error))
        return out

    # --------------------------------------------------------------- the playout

    def on_released(self, released: Released, now: float) -> list[Output]:
        """A frame left for Asterisk: count it, and measure latency on an item's first."""
        stats = self.stats
        stats.frames_out += 1
        if released.silent:
            if self.streaming_items:
                stats.underruns += 1  # the model is still sending, we ran dry
            return []
        stats.audio_frames_out += 1
        out: list[Output] = []
        for item in released.items:
            first = self._first_delta_at.pop(item, None)
            if first is None:
                continue
            stats.delta_to_frame_ms.append((now - first) * 1000)
            if self._speech_stopped_at is not None:
                latency = (now - self._speech_stopped_at) * 1000
                stats.turn_latency_ms.append(latency)
                self._speech_stopped_at = None
                out.append(Emit("turn_latency", {"item_id": item, "ms": round(latency, 1)}))
        return out

    # -------------------------------------------------------------------- tools

    def _dispatch_tool(self, fc: p.ToolCall) -> list[Output]:
        if not fc.call_id or not fc.name or fc.call_id in self._handled_calls:
            # the service reports a call in several events: act once, on one that names
            # the tool (some compatible servers leave the name out of arguments.done)
            return []
        self._handled_calls.append(fc.call_id)
        if fc.response_id and fc.response_id in self._cut_responses:
            # the caller interrupted that response: a hangup or transfer it was about to
            # do was not what the caller heard, so it must not happen
            self._log.info("ignoring %s of a response the caller interrupted", fc.name)
            return []
        self.stats.tool_calls += 1
        self._running_tools[fc.call_id] = False
        if len(self._running_tools) > 64:  # bounded: a tool that never returns is forgotten
            self._running_tools.pop(next(iter(self._running_tools)))
        return [RunTool(fc)]

    def tool_finished(self, fc: p.ToolCall, result: dict[str, Any], now: float) -> list[Output]:
        """The tool's result goes back to the model; then a new response, unless the
        tool ends the turn (hangup) or the caller spoke while it ran. Right after a
        keypress the response waits (keypress_quiet.py): the agent does not talk over
        the menu it just selected."""
        caller_spoke = self._running_tools.pop(fc.call_id, False)
        output = json.dumps(result)
        out: list[Output] = [p.ToolResult(fc.call_id, output)]
        self._history.append(f"Tool {fc.name}: {output[:MAX_TRANSCRIPT_CHARS]}")
        if (self.tools.continues(fc.name) or not result.get("ok")) and not caller_spoke:
            if self.keypress.may_respond(now):
                out += self._want_response()
            else:
                self.held_until = self.keypress.deadline()
        return out

    def dtmf_sent(self, now: float) -> None:
        """A digit went out on the line: stay quiet until the callee spoke or a timeout."""
        self.keypress.on_dtmf_sent(now)

    def release_held(self, now: float) -> list[Output]:
        """The keypress quiet is over (checked on the 20 ms tick): the held response."""
        if self.held_until is None or now < self.held_until:
            return []
        self.held_until = None
        self.keypress.may_respond(now)  # ends the quiet
        return self._want_response()

    def _on_speech_stopped(self, ev: p.SpeechStopped) -> list[Output]:
        out: list[Output] = [Emit("speech_stopped", {"item_id": ev.item_id})]
        self.keypress.on_callee_speech()
        if self.held_until is not None:
            self.held_until = None
            if self.agent.turn_detection.type == "none":
                out += self._want_response()  # no VAD answers this turn by itself
        return out

    def begin_final_words(self, action: str) -> None:
        """The agent's last words before *action* are playing; a cut cancels the action."""
        self._final_words[action] = False

    def final_words_cut(self, action: str) -> bool:
        """True when the caller talked over the final words of *action* (ends the watch)."""
        return self._final_words.pop(action, False)

    # ----------------------------------------------------------- caller and operator

    def caller_dtmf(self, digit: str) -> list[Output]:
        """One digit the caller pressed (past the rate limit): recorded, not yet sent."""
        return [Emit("caller_dtmf", {"digit": digit})]

    def caller_dtmf_burst(self, digits: str) -> list[Output]:
        """The digits of one burst (call/dtmf.py): one message to the model, one response."""
        if not digits or not self.agent.caller_dtmf_to_model:
            return []
        self._history.append(f"Caller pressed: {digits}")  # carried into a new session
        return [p.AddMessage("user", f"[caller pressed {digits}]"), *self._want_response()]

    def operator_message(self, role: Literal["user", "system"], text: str) -> list[Output]:
        self._log.info("operator %s message (%d chars)", role, len(text))
        out: list[Output] = [
            p.AddMessage(role, text),
            Emit("operator_message", {"role": role, "text": text}),
        ]
        return out + self._want_response()

    def _want_response(self, instructions: str | None = None) -> list[Output]:
        """Respond now, or as soon as the active response is done."""
        if self.response.feed(RespEvent.WANT):
            return [p.Respond(instructions)]
        return []
