"""GPT-Live behind the seam, sans-I/O: server events (JSON literals) -> neutral events."""

from __future__ import annotations

from agi_bridge.protocol import gpt_live as gl
from agi_bridge.protocol.realtime import SessionConfig
from agi_bridge.providers import base as p
from agi_bridge.providers.gpt_live import (
    HOLD_MAX_MS,
    QUIET_MS,
    TAIL_MS,
    LiveTranslator,
    live_start,
)

AUDIO = b'{"type":"session.output_audio.delta","delta":"/w=="}'


def feed(t: LiveTranslator, message: bytes, now: float) -> list[p.ProviderEvent]:
    return t.feed(gl.parse_server_event(message), now)


def test_turns_from_transcripts_and_audio() -> None:
    t = LiveTranslator()
    [greeting] = feed(t, AUDIO, 0.0)
    assert greeting == p.AudioOut("live_turn_2", "live_item_1", b"\xff")
    feed(
        t,
        b'{"type":"session.output_transcript.delta","delta":"Hello.","start_ms":0,"end_ms":0}',
        0.1,
    )
    # the caller starts talking: the agent's turn ends, the caller's begins
    out = feed(
        t,
        b'{"type":"session.input_transcript.delta","delta":"my ","start_ms":900,"end_ms":1200}',
        1.0,
    )
    assert out == [
        p.AgentTranscript("live_item_1", "Hello."),
        p.AudioOutDone("live_item_1"),
        p.SpeechStarted("live_caller_3"),
        p.CallerTranscriptDelta("live_caller_3", "my "),
    ]
    feed(
        t,
        b'{"type":"session.input_transcript.delta","delta":"order","start_ms":1200,"end_ms":1500}',
        1.1,
    )
    # audio right after the cut is the interrupted utterance's tail: the cut item id
    [tail] = feed(t, AUDIO, 1.0 + TAIL_MS / 2000)
    assert tail == p.AudioOut("live_turn_2", "live_item_1", b"\xff")
    # later audio is the agent's next turn: the caller's turn ends first
    out = feed(t, AUDIO, 2.0)
    assert out == [
        p.SpeechStopped("live_caller_3"),
        p.CallerTranscript("live_caller_3", "my order"),
        p.AudioOut("live_turn_5", "live_item_4", b"\xff"),
    ]


CALL = (
    b'{"type":"response.event","event_id":"e","delegation_id":"del_1","event":'
    b'{"type":"response.output_item.done","output_index":0,"item":{"type":"function_call",'
    b'"id":"fc_1","call_id":"call_1","name":"hangup","arguments":"{}","status":"completed"}}}'
)
GOODBYE = b'{"type":"session.output_transcript.delta","delta":"Goodbye!","start_ms":0,"end_ms":0}'


def test_a_tool_call_waits_for_the_words_that_come_with_it() -> None:
    t = LiveTranslator()
    assert feed(t, CALL, 0.0) == []  # the delegation comes first, the goodbye after it
    assert t.next_tick() == HOLD_MAX_MS / 1000
    feed(t, AUDIO, 0.2)
    feed(t, GOODBYE, 0.2)
    feed(t, AUDIO, 0.4)
    assert t.next_tick() == 0.4 + QUIET_MS / 1000  # once the goodbye has arrived
    assert t.tick(0.5) == []
    assert t.tick(0.4 + QUIET_MS / 1000) == [
        p.AgentTranscript("live_item_1", "Goodbye!"),
        p.ToolCall("call_1", "hangup", "{}"),
    ]
    assert t.next_tick() is None
    assert t.result_sent("call_1") is True  # every call of del_1 answered
    assert t.result_sent("call_1") is False


def test_a_tool_call_without_words_goes_out_after_the_longest_hold() -> None:
    t = LiveTranslator()
    feed(t, AUDIO, 0.0)  # earlier words, before the call
    assert feed(t, CALL, 5.0) == []
    assert t.tick(5.0 + HOLD_MAX_MS / 2000) == []
    assert t.tick(5.0 + HOLD_MAX_MS / 1000) == [p.ToolCall("call_1", "hangup", "{}")]


def test_a_pause_in_the_agent_audio_starts_a_new_item() -> None:
    t = LiveTranslator()
    feed(t, AUDIO, 0.0)
    feed(t, GOODBYE, 0.0)
    out = feed(t, AUDIO, 0.1 + QUIET_MS / 1000)
    assert out == [
        p.AgentTranscript("live_item_1", "Goodbye!"),
        p.AudioOutDone("live_item_1"),
        p.AudioOut("live_turn_4", "live_item_3", b"\xff"),
    ]


def test_usage_close_errors_and_the_rest() -> None:
    t = LiveTranslator()
    assert feed(
        t, b'{"type":"session.usage.updated","event_id":"e","usage":{"seconds":10}}', 0
    ) == [p.SessionUsage(10.0)]
    closed = feed(
        t,
        b'{"type":"session.closed","event_id":"e","reason":"expired","usage":{"seconds":3600}}',
        0,
    )
    assert closed == [
        p.SessionUsage(3600.0),
        p.ProviderError("session_expired", "GPT-Live session expired", resumable=True),
    ]
    [err] = feed(
        t,
        b'{"type":"error","event_id":"e","error":{"type":"invalid_request_error",'
        b'"code":"invalid_api_key","message":"bad key"}}',
        0,
    )
    assert isinstance(err, p.ProviderError) and err.fatal and err.code == "invalid_api_key"
    assert feed(t, b'{"type":"transport.ringing"}', 0) == [p.Ignored("transport.ringing")]
    assert feed(t, b'{"type":"session.started","session":{"id":"s"}}', 0) == [
        p.Ignored("SessionStarted")
    ]


def test_session_start_from_the_conversation_session() -> None:
    tool = {"type": "function", "name": "hangup", "parameters": {"type": "object"}}
    with_tools = live_start(
        SessionConfig(model="gpt-live-1", instructions="Hi", voice="cedar", tools=(tool,)),
        "gpt-5.5",
    )
    start = gl.session_start(with_tools)["session"]
    assert start["model"] == "gpt-live-1" and start["audio"]["output"]["voice"] == "cedar"
    assert start["delegation"]["type"] == "responses"
    assert start["delegation"]["responses"]["model"] == "gpt-5.5"
    plain = gl.session_start(live_start(SessionConfig(model="gpt-live-1"), "gpt-5.5"))
    assert plain["session"]["delegation"] == {"type": "client"}
