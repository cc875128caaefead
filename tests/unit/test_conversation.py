"""The conversation rules, without sockets: provider events in, commands and actions out."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

import pytest

from agi_bridge import audio
from agi_bridge.call.conversation import Conversation, EndCall, FlushMedia, Output, RunTool
from agi_bridge.call.events import EndReason
from agi_bridge.call.responses import RESPONSE_TABLE, Resp, RespEvent, ResponseTracker
from agi_bridge.call.stats import CallStats
from agi_bridge.config import Config, load_text
from agi_bridge.playout import PlayoutBuffer
from agi_bridge.providers import base as p

LOG = logging.LoggerAdapter(logging.getLogger("test"), {"call_id": "t"})

CONFIG = """
agents:
  default:
    greeting: Say hello.
    turn_detection: {type: server_vad}
    tools: [send_dtmf, hangup]
"""


def make(config: str = CONFIG, *, ulaw: bool = False, **agent: Any) -> Conversation:
    cfg: Config = load_text(config, "t.yaml")
    if agent:
        cfg = dataclasses.replace(
            cfg, agents={"default": dataclasses.replace(cfg.agents["default"], **agent)}
        )
    return Conversation(
        config=cfg,
        agent_name="default",
        agent=cfg.agents["default"],
        playout=PlayoutBuffer(2000, sample_width=1 if ulaw else 2),
        stats=CallStats(),
        decode=bytes if ulaw else audio.ulaw_to_slin,
        log=LOG,
        today=lambda: dt.date(2026, 12, 1),
    )


def kinds(outputs: list[Output]) -> list[str]:
    return [type(o).__name__ for o in outputs]


def audio_ms(ms: int) -> bytes:
    return b"\x10" * (8 * ms)  # µ-law, 8 bytes per ms, not silence


# ---------------------------------------------------------------- the response table

ALL_STATES = list(Resp)


@pytest.mark.parametrize(
    ("start", "event", "end", "send"),
    [(s, e, *RESPONSE_TABLE[(s, e)]) for (s, e) in RESPONSE_TABLE],
    ids=lambda v: getattr(v, "value", str(v)),
)
def test_response_table_transitions(start: Resp, event: RespEvent, end: Resp, send: bool) -> None:
    tracker = ResponseTracker(LOG)
    tracker.state = start
    assert tracker.feed(event) is send
    assert tracker.state is end


@pytest.mark.parametrize("state", ALL_STATES, ids=lambda s: s.value)
def test_a_lost_session_forgets_every_response(state: Resp) -> None:
    tracker = ResponseTracker(LOG)
    tracker.state = state
    assert tracker.feed(RespEvent.LOST) is False
    assert tracker.state is Resp.IDLE


def test_only_one_respond_at_a_time_and_the_wish_waits() -> None:
    tracker = ResponseTracker(LOG)
    assert tracker.feed(RespEvent.WANT) is True  # IDLE -> REQUESTED: send
    assert tracker.feed(RespEvent.WANT) is False  # a second wish waits
    assert tracker.feed(RespEvent.STARTED) is False
    assert tracker.feed(RespEvent.ENDED) is True  # the waiting wish is sent now
    assert tracker.state is Resp.REQUESTED


def test_unlisted_pairs_keep_the_state() -> None:
    tracker = ResponseTracker(LOG)
    tracker.state = Resp.REQUESTED
    assert tracker.feed(RespEvent.ENDED) is False  # an older response ended: still waiting
    assert tracker.state is Resp.REQUESTED


# ------------------------------------------------------------------ session opening


def test_first_session_configures_then_greets_with_the_agent_instructions() -> None:
    conv = make()
    out = conv.open_session(resumed=False)
    assert kinds(out) == ["Configure", "Respond"]
    configure, respond = out
    assert isinstance(configure, p.Configure) and isinstance(respond, p.Respond)
    assert "Tuesday, December 01, 2026" in configure.session.instructions
    assert respond.instructions is not None
    assert respond.instructions.startswith(configure.session.instructions)
    assert respond.instructions.endswith("Say hello.")


def test_resumed_session_gets_the_transcript_and_no_greeting() -> None:
    conv = make()
    conv.open_session(resumed=False)
    conv.on_event(p.CallerTranscript("c1", "I need my balance"), 1.0)
    conv.on_event(p.AgentTranscript("a1", "Your balance is twelve dollars"), 2.0)
    conv.session_lost()
    out = conv.open_session(resumed=True)
    assert kinds(out) == ["Configure"]
    session = out[0].session  # type: ignore[union-attr]
    assert "Caller: I need my balance" in session.instructions
    assert "You: Your balance is twelve dollars" in session.instructions


# ----------------------------------------------------------------------- barge-in


@pytest.mark.parametrize("ulaw", [False, True], ids=["slin16-port", "ulaw-port"])
def test_barge_in_truncates_at_exactly_what_was_released(ulaw: bool) -> None:
    conv = make(ulaw=ulaw)
    conv.open_session(resumed=False)
    conv.on_event(p.ResponseStarted("r1"), 0.0)
    conv.on_event(p.AudioOut("r1", "i1", audio_ms(1000)), 0.0)
    for _ in range(7):  # 140 ms reach the phone
        conv.on_released(conv.playout.next_frame(), 0.1)
    out = conv.on_event(p.SpeechStarted("c2"), 0.2)
    assert kinds(out) == ["Emit", "FlushMedia", "Emit", "Truncate"]
    assert out[-1] == p.Truncate("i1", 140)
    assert not conv.playout.audible
    assert conv.stats.barge_ins == 1 and conv.stats.truncates_sent == 1
    # late audio of the cut response is dropped, not played
    conv.on_event(p.AudioOut("r1", "i1", audio_ms(200)), 0.3)
    assert not conv.playout.audible


def test_ulaw_port_plays_the_providers_bytes_untouched() -> None:
    conv = make(ulaw=True)
    conv.on_event(p.AudioOut("r1", "i1", bytes(range(160))), 0.0)
    released = conv.playout.next_frame()
    assert released.pcm == bytes(range(160)) and released.items == ("i1",)
    assert conv.playout.next_frame().pcm == b"\xff" * 160  # µ-law silence


def test_speech_while_silent_is_no_barge_in() -> None:
    conv = make()
    out = conv.on_event(p.SpeechStarted("c1"), 0.0)
    assert kinds(out) == ["Emit"]
    assert conv.stats.barge_ins == 0


def test_nothing_heard_means_no_truncate() -> None:
    conv = make()
    conv.on_event(p.AudioOut("r1", "i1", audio_ms(500)), 0.0)
    out = conv.on_event(p.SpeechStarted("c1"), 0.0)
    assert not any(isinstance(o, p.Truncate) for o in out)
    assert any(isinstance(o, FlushMedia) for o in out)


def test_operator_interrupt_cancels_only_an_active_response() -> None:
    conv = make()
    conv.on_event(p.ResponseStarted("r1"), 0.0)
    conv.on_event(p.AudioOut("r1", "i1", audio_ms(500)), 0.0)
    conv.on_released(conv.playout.next_frame(), 0.0)
    out, data = conv.cut("operator_interrupt", cancel=True)
    assert p.Cancel() in out and data["cancelled_response"] == "r1"
    conv.on_event(p.ResponseEnded("r1", "cancelled"), 0.1)
    out, data = conv.cut("operator_interrupt", cancel=True)
    assert p.Cancel() not in out and "cancelled_response" not in data


# -------------------------------------------------------------------------- tools


def test_a_tool_runs_once_per_call_id() -> None:
    conv = make()
    fc = p.ToolCall("call1", "send_dtmf", '{"digits": "1"}', "r1")
    assert kinds(conv.on_event(fc, 0.0)) == ["RunTool"]
    ended = conv.on_event(p.ResponseEnded("r1", "completed", {}, (fc,)), 0.1)
    assert not any(isinstance(o, RunTool) for o in ended)


def test_tool_calls_of_a_cut_response_never_run() -> None:
    conv = make()
    conv.on_event(p.ResponseStarted("r1"), 0.0)
    conv.on_event(p.AudioOut("r1", "i1", audio_ms(500)), 0.0)
    conv.on_released(conv.playout.next_frame(), 0.0)
    conv.on_event(p.SpeechStarted("c1"), 0.1)
    out = conv.on_event(p.ToolCall("call1", "hangup", '{"reason": "done"}', "r1"), 0.2)
    assert out == []


@pytest.mark.parametrize(
    ("tool", "result", "caller_spoke", "responds"),
    [
        ("send_dtmf", {"ok": True}, False, True),
        ("send_dtmf", {"ok": True}, True, False),  # the caller spoke: answer them instead
        ("hangup", {"ok": True}, False, False),  # a hangup ends the turn
        ("hangup", {"ok": False, "error": "x"}, False, True),  # a failed one is explained
    ],
)
def test_after_a_tool(
    tool: str, result: dict[str, Any], caller_spoke: bool, responds: bool
) -> None:
    conv = make()
    fc = p.ToolCall("call1", tool, "{}", "r1")
    conv.on_event(fc, 0.0)
    if caller_spoke:
        conv.on_event(p.AudioOut("r2", "i2", audio_ms(100)), 0.0)
        conv.on_released(conv.playout.next_frame(), 0.0)
        conv.on_event(p.SpeechStarted("c1"), 0.1)
    out = conv.tool_finished(fc, result, 1.0)
    assert isinstance(out[0], p.ToolResult) and out[0].call_id == "call1"
    assert any(isinstance(o, p.Respond) for o in out) is responds


def test_final_words_are_cancelled_by_the_caller() -> None:
    conv = make()
    conv.begin_final_words("hangup")
    assert conv.final_words_cut("hangup") is False
    conv.begin_final_words("hangup")
    conv.on_event(p.AudioOut("r1", "i1", audio_ms(100)), 0.0)
    conv.on_event(p.SpeechStarted("c1"), 0.0)
    assert conv.final_words_cut("hangup") is True


# ------------------------------------------------------------------ errors, caller


def test_fatal_error_ends_the_call_and_resumable_does_not() -> None:
    conv = make()
    out = conv.on_event(p.ProviderError("invalid_api_key", "bad key", fatal=True), 0.0)
    assert EndCall(EndReason.REALTIME_FAILED, "invalid_api_key: bad key") in out
    conv = make()
    out = conv.on_event(p.ProviderError("session_expired", "60 min", resumable=True), 0.0)
    assert not any(isinstance(o, EndCall) for o in out)
    assert conv.resumable_error == "session_expired: 60 min"


def test_busy_error_asks_again_after_the_active_response() -> None:
    conv = make()
    conv.open_session(resumed=False)  # greeting requested
    conv.on_event(
        p.ProviderError("conversation_already_has_active_response", "busy", response_busy=True), 0.0
    )
    out = conv.on_event(p.ResponseEnded("r0", "completed"), 0.1)
    assert p.Respond() in out


def test_caller_dtmf_reaches_the_model_only_when_configured() -> None:
    assert kinds(make(caller_dtmf_to_model=False).caller_dtmf("5")) == ["Emit"]
    assert make(caller_dtmf_to_model=False).caller_dtmf_burst("5") == []
    assert kinds(make(caller_dtmf_to_model=True).caller_dtmf("5")) == ["Emit"]
    out = make(caller_dtmf_to_model=True).caller_dtmf_burst("12#")  # one message per burst
    assert p.AddMessage("user", "[caller pressed 12#]") in out
    assert any(isinstance(o, p.Respond) for o in out)
    assert make().caller_dtmf_burst("") == []


def test_turn_latency_is_measured_from_speech_stop_to_the_first_frame() -> None:
    conv = make()
    conv.on_event(p.SpeechStopped("c1"), 10.0)
    conv.on_event(p.AudioOut("r1", "i1", audio_ms(40)), 10.3)
    out = conv.on_released(conv.playout.next_frame(), 10.5)
    assert [o.data["ms"] for o in out if hasattr(o, "data")] == [500.0]
    assert list(conv.stats.delta_to_frame_ms) == [pytest.approx(200.0)]


def test_a_silent_caller_is_asked_whether_they_are_still_there() -> None:
    conv = make()
    conv.open_session(resumed=False)
    conv.on_event(p.ResponseStarted("r0"), 0.0)
    # while the agent's greeting response runs, silence is the caller listening
    assert kinds(conv.on_event(p.CallerIdle(), 1.0)) == ["Emit"]
    conv.on_event(p.ResponseEnded("r0", "completed"), 2.0)
    out = conv.on_event(p.CallerIdle(), 9.0)
    assert kinds(out) == ["Emit", "Respond"]
    respond = out[1]
    assert isinstance(respond, p.Respond) and respond.instructions
    assert respond.instructions.endswith("still there or need anything else.")


def test_a_silence_the_service_answers_itself_gets_no_second_response() -> None:
    conv = make()
    conv.open_session(resumed=False)
    # the Realtime API commits the silence and responds on its own (timeout_triggered)
    assert kinds(conv.on_event(p.CallerIdle(answered=True), 9.0)) == ["Emit"]


def test_the_calls_values_fill_the_instructions_and_greeting_safely() -> None:
    cfg = load_text(CONFIG, "t.yaml")
    agent = dataclasses.replace(
        cfg.agents["default"],
        instructions="The caller is {caller_id}, calling about order {order}. Keep {unknown}.",
        greeting="Hello {caller_id}!",
    )
    conv = Conversation(
        config=cfg,
        agent_name="default",
        agent=agent,
        playout=PlayoutBuffer(2000),
        stats=CallStats(),
        decode=audio.ulaw_to_slin,
        log=LOG,
        context={"caller_id": "{order}", "order": "A-17"},
    )
    configure, respond = conv.open_session(resumed=False)
    assert isinstance(configure, p.Configure) and isinstance(respond, p.Respond)
    # a value is never expanded again; an unknown placeholder stays as written
    assert "The caller is {order}, calling about order A-17. Keep {unknown}." in (
        configure.session.instructions
    )
    assert respond.instructions is not None and respond.instructions.endswith("Hello {order}!")


def test_audio_the_far_end_still_held_is_not_counted_as_heard() -> None:
    cfg = load_text(CONFIG, "t.yaml")
    conv = Conversation(
        config=cfg,
        agent_name="default",
        agent=cfg.agents["default"],
        playout=PlayoutBuffer(2000, sample_width=1),
        stats=CallStats(),
        decode=bytes,
        log=LOG,
        far_end_queued_ms=lambda: 60,  # chan_websocket still holds 3 frames
    )
    conv.on_event(p.ResponseStarted("r1"), 0.0)
    conv.on_event(p.AudioOut("r1", "i1", audio_ms(1000)), 0.0)
    for _ in range(10):
        conv.on_released(conv.playout.next_frame(), 0.1)
    out = conv.on_event(p.SpeechStarted("c1"), 0.2)
    assert out[-1] == p.Truncate("i1", 140)  # 200 ms released, 60 of them never played
