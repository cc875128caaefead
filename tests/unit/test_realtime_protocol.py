"""Realtime GA events, sans-I/O: the session.update shape, client builders, server parser."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from agi_bridge.errors import ProtocolError, RealtimeProtocolError
from agi_bridge.protocol import realtime as rt
from agi_bridge.protocol.realtime import (
    AudioDelta,
    AudioDone,
    AudioTranscriptDelta,
    AudioTranscriptDone,
    ErrorEvent,
    FunctionCall,
    InputCommitted,
    ItemTruncated,
    ResponseCreated,
    ResponseDone,
    SemanticVad,
    ServerVad,
    SessionConfig,
    SessionCreated,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TranscriptionCompleted,
    TranscriptionDelta,
    TranscriptionFailed,
    UnknownEvent,
)

# Keys of the retired beta session shape: none may appear anywhere in a GA session.update.
BETA_KEYS = {
    "temperature",
    "modalities",
    "input_audio_format",
    "output_audio_format",
    "input_audio_transcription",
}

DTMF_TOOL = {
    "type": "function",
    "name": "send_dtmf",
    "description": "Press keys",
    "parameters": {"type": "object", "properties": {"digits": {"type": "string"}}},
}


def all_keys(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield key
            yield from all_keys(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from all_keys(value)


def wire(event: dict[str, Any]) -> dict[str, Any]:
    """What goes on the websocket, read back: proves the event is JSON-serialisable."""
    text = rt.encode(event)
    assert isinstance(text, str)
    decoded: dict[str, Any] = json.loads(text)
    return decoded


# ------------------------------------------------------------------------ session.update


def test_session_update_default_shape() -> None:
    msg = wire(rt.session_update(SessionConfig(instructions="Be brief.")))
    assert msg["type"] == "session.update"
    assert set(msg) == {"type", "session"}
    s = msg["session"]
    assert s["type"] == "realtime"
    assert s["model"] == "gpt-realtime"
    assert s["instructions"] == "Be brief."
    assert s["output_modalities"] == ["audio"]
    assert s["max_output_tokens"] == "inf"
    assert s["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert s["audio"]["output"] == {
        "format": {"type": "audio/pcmu"},
        "voice": "marin",
        "speed": 1.0,
    }
    assert s["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "auto",
        "create_response": True,
        "interrupt_response": True,
    }
    # the documented successor for live transcription (models.DEFAULT_TRANSCRIPTION_MODEL)
    assert s["audio"]["input"]["transcription"] == {"model": "gpt-live-transcribe"}
    assert "noise_reduction" not in s["audio"]["input"]
    # no tools configured: an empty list (clears a previous agent's tools), no tool_choice
    assert s["tools"] == []
    assert "tool_choice" not in s
    assert set(s) == {
        "type",
        "model",
        "instructions",
        "output_modalities",
        "audio",
        "max_output_tokens",
        "tools",
    }


@pytest.mark.parametrize(
    "cfg",
    [
        SessionConfig(),
        SessionConfig(turn_detection=ServerVad(idle_timeout_ms=5000), tools=(DTMF_TOOL,)),
        SessionConfig(turn_detection=None, transcription_model=None),
        SessionConfig(
            voice="cedar",
            speed=1.2,
            transcription_language="fr",
            noise_reduction="far_field",
            max_output_tokens=512,
            tools=(DTMF_TOOL,),
        ),
    ],
)
def test_session_update_has_no_beta_fields(cfg: SessionConfig) -> None:
    msg = wire(rt.session_update(cfg))
    keys = set(all_keys(msg))
    assert not keys & BETA_KEYS, keys & BETA_KEYS
    session = msg["session"]
    for top_level_beta in ("voice", "turn_detection", "input_audio_format", "temperature"):
        assert top_level_beta not in session
    assert session["type"] == "realtime"
    assert session["audio"]["input"]["format"]["type"] == "audio/pcmu"
    assert session["audio"]["output"]["format"]["type"] == "audio/pcmu"
    assert session["audio"]["output"]["voice"] == cfg.voice


def test_session_update_server_vad() -> None:
    vad = ServerVad(threshold=0.7, prefix_padding_ms=200, silence_duration_ms=400)
    s = wire(rt.session_update(SessionConfig(turn_detection=vad)))["session"]
    assert s["audio"]["input"]["turn_detection"] == {
        "type": "server_vad",
        "threshold": 0.7,
        "prefix_padding_ms": 200,
        "silence_duration_ms": 400,
        "create_response": True,
        "interrupt_response": True,
    }


def test_session_update_server_vad_idle_timeout() -> None:
    vad = ServerVad(idle_timeout_ms=6000, interrupt_response=False)
    td = wire(rt.session_update(SessionConfig(turn_detection=vad)))["session"]["audio"]["input"][
        "turn_detection"
    ]
    assert td["idle_timeout_ms"] == 6000
    assert td["interrupt_response"] is False


def test_session_update_semantic_vad_eagerness() -> None:
    vad = SemanticVad(eagerness="high", create_response=False)
    td = wire(rt.session_update(SessionConfig(turn_detection=vad)))["session"]["audio"]["input"][
        "turn_detection"
    ]
    assert td == {
        "type": "semantic_vad",
        "eagerness": "high",
        "create_response": False,
        "interrupt_response": True,
    }


def test_session_update_manual_turns_sends_explicit_null() -> None:
    s = wire(rt.session_update(SessionConfig(turn_detection=None)))["session"]
    # null (not absent) switches server VAD off; absent would leave the default on
    assert "turn_detection" in s["audio"]["input"]
    assert s["audio"]["input"]["turn_detection"] is None


def test_session_update_transcription_options() -> None:
    s = wire(
        rt.session_update(
            SessionConfig(transcription_model="whisper-1", transcription_language="de")
        )
    )["session"]
    assert s["audio"]["input"]["transcription"] == {"model": "whisper-1", "language": "de"}
    s = wire(rt.session_update(SessionConfig(transcription_model=None)))["session"]
    assert "transcription" not in s["audio"]["input"]


def test_session_update_voice_speed_noise_reduction_tokens() -> None:
    cfg = SessionConfig(
        model="gpt-realtime-mini",
        voice="ash",
        speed=0.9,
        noise_reduction="near_field",
        max_output_tokens=300,
    )
    s = wire(rt.session_update(cfg))["session"]
    assert s["model"] == "gpt-realtime-mini"
    assert s["audio"]["output"]["voice"] == "ash"
    assert s["audio"]["output"]["speed"] == 0.9
    assert s["audio"]["input"]["noise_reduction"] == {"type": "near_field"}
    assert s["max_output_tokens"] == 300


def test_session_update_tools_and_tool_choice() -> None:
    hangup = {**DTMF_TOOL, "name": "hangup"}
    s = wire(rt.session_update(SessionConfig(tools=(DTMF_TOOL, hangup))))["session"]
    assert s["tools"] == [DTMF_TOOL, hangup]
    assert s["tool_choice"] == "auto"


def test_encode_is_compact_json() -> None:
    text = rt.encode({"type": "x", "a": [1, 2]})
    assert text == '{"type":"x","a":[1,2]}'


# ------------------------------------------------------------------------ client events


def test_input_audio_append_base64_round_trip() -> None:
    ulaw = bytes(range(256)) * 3
    msg = wire(rt.input_audio_append(ulaw))
    assert msg["type"] == "input_audio_buffer.append"
    assert set(msg) == {"type", "audio"}
    assert base64.b64decode(msg["audio"], validate=True) == ulaw


def test_audio_append_fast_path_is_the_same_json() -> None:
    ulaw = bytes(range(256)) * 2
    text = rt.encode(rt.input_audio_append(ulaw))
    assert text == json.dumps(rt.input_audio_append(ulaw), separators=(",", ":"))
    assert text.startswith('{"type":"input_audio_buffer.append","audio":"')


def test_encode_escapes_audio_it_did_not_make_itself() -> None:
    # only base64 made by input_audio_append skips escaping; any other string is dumped
    odd = {"type": "input_audio_buffer.append", "audio": 'a"b\\c'}
    assert json.loads(rt.encode(odd)) == odd
    extra = {**rt.input_audio_append(b"\x00"), "event_id": "e1"}
    assert json.loads(rt.encode(extra)) == extra


def test_input_audio_append_empty() -> None:
    assert wire(rt.input_audio_append(b"")) == {"type": "input_audio_buffer.append", "audio": ""}


def test_input_audio_commit_and_response_cancel() -> None:
    assert wire(rt.input_audio_commit()) == {"type": "input_audio_buffer.commit"}
    assert wire(rt.response_cancel()) == {"type": "response.cancel"}


def test_item_truncate() -> None:
    assert wire(rt.item_truncate("item_42", 1234)) == {
        "type": "conversation.item.truncate",
        "item_id": "item_42",
        "content_index": 0,
        "audio_end_ms": 1234,
    }


def test_function_call_output() -> None:
    output = json.dumps({"ok": True, "digits_sent": "1#"})
    assert wire(rt.function_call_output("call_7", output)) == {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "call_7", "output": output},
    }


def test_user_text() -> None:
    assert wire(rt.user_text("The caller pressed 5.")) == {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "The caller pressed 5."}],
        },
    }


def test_response_create_without_instructions() -> None:
    assert wire(rt.response_create()) == {"type": "response.create"}
    assert wire(rt.response_create("")) == {"type": "response.create"}


def test_response_create_with_instructions() -> None:
    assert wire(rt.response_create("Say hello.")) == {
        "type": "response.create",
        "response": {"instructions": "Say hello."},
    }


# ------------------------------------------------------------------------- server events


def parse(obj: dict[str, Any]) -> rt.ServerEvent:
    return rt.parse_server_event(json.dumps(obj))


def test_audio_delta_decodes_base64() -> None:
    ulaw = b"\xff\x7f\x00\x80" * 40
    event = parse(
        {
            "type": "response.output_audio.delta",
            "event_id": "ev_1",
            "response_id": "resp_1",
            "item_id": "item_1",
            "output_index": 0,
            "content_index": 0,
            "delta": base64.b64encode(ulaw).decode(),
        }
    )
    assert event == AudioDelta("resp_1", "item_1", ulaw)


def test_audio_delta_from_bytes_message() -> None:
    raw = b'{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"/38="}'
    assert rt.parse_server_event(raw) == AudioDelta("r", "i", b"\xff\x7f")


@pytest.mark.parametrize("bad", ["!!!!", "abc", "YW Jj", "AAAA=AAA"])
def test_audio_delta_invalid_base64(bad: str) -> None:
    with pytest.raises(RealtimeProtocolError, match=r"response\.output_audio\.delta"):
        parse({"type": "response.output_audio.delta", "item_id": "i", "delta": bad})


def test_speech_started() -> None:
    event = parse(
        {
            "type": "input_audio_buffer.speech_started",
            "event_id": "ev",
            "audio_start_ms": 1520,
            "item_id": "item_u1",
        }
    )
    assert event == SpeechStarted("item_u1", 1520)


def test_speech_stopped_and_committed() -> None:
    assert parse(
        {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 2900, "item_id": "u1"}
    ) == SpeechStopped("u1", 2900)
    assert parse(
        {"type": "input_audio_buffer.committed", "item_id": "u1", "previous_item_id": None}
    ) == InputCommitted("u1")


def test_response_done_with_usage_and_function_call() -> None:
    usage = {
        "total_tokens": 300,
        "input_tokens": 200,
        "output_tokens": 100,
        "input_token_details": {"audio_tokens": 150, "text_tokens": 50, "cached_tokens": 0},
        "output_token_details": {"audio_tokens": 80, "text_tokens": 20},
    }
    event = parse(
        {
            "type": "response.done",
            "event_id": "ev_9",
            "response": {
                "object": "realtime.response",
                "id": "resp_9",
                "status": "completed",
                "status_details": None,
                "output": [
                    {
                        "id": "item_msg",
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_audio", "transcript": "One moment."}],
                    },
                    {
                        "id": "item_fc",
                        "type": "function_call",
                        "status": "completed",
                        "name": "send_dtmf",
                        "call_id": "call_abc",
                        "arguments": '{"digits":"1#"}',
                    },
                ],
                "usage": usage,
            },
        }
    )
    assert isinstance(event, ResponseDone)
    assert event.response_id == "resp_9"
    assert event.status == "completed"
    assert event.status_details is None
    assert event.usage == usage
    assert len(event.output) == 2
    assert event.function_calls() == [
        FunctionCall("call_abc", "send_dtmf", '{"digits":"1#"}', "item_fc", "resp_9")
    ]


def test_response_done_cancelled_without_output() -> None:
    event = parse(
        {
            "type": "response.done",
            "response": {
                "id": "resp_2",
                "status": "cancelled",
                "status_details": {"type": "cancelled", "reason": "turn_detected"},
                "output": [],
            },
        }
    )
    assert isinstance(event, ResponseDone)
    assert event.status == "cancelled"
    assert event.status_details == {"type": "cancelled", "reason": "turn_detected"}
    assert event.usage == {}
    assert event.function_calls() == []


def test_response_done_tolerates_malformed_fields() -> None:
    event = parse(
        {"type": "response.done", "response": {"id": 5, "output": ["junk", {"type": "x"}]}}
    )
    assert isinstance(event, ResponseDone)
    assert event.response_id == ""
    assert event.output == [{"type": "x"}]
    assert event.function_calls() == []


def test_error_event_fields() -> None:
    event = parse(
        {
            "type": "error",
            "event_id": "ev_err",
            "error": {
                "type": "invalid_request_error",
                "code": "conversation_already_has_active_response",
                "message": "Conversation already has an active response",
                "param": None,
                "event_id": "client_ev_3",
            },
        }
    )
    assert event == ErrorEvent(
        "invalid_request_error",
        "conversation_already_has_active_response",
        "Conversation already has an active response",
        "",
        "client_ev_3",
    )


def test_fatal_error_codes() -> None:
    assert "session_expired" in rt.FATAL_ERROR_CODES
    assert "conversation_already_has_active_response" not in rt.FATAL_ERROR_CODES


def test_transcription_delta_completed_failed() -> None:
    assert parse(
        {
            "type": "conversation.item.input_audio_transcription.delta",
            "item_id": "u1",
            "content_index": 0,
            "delta": "Hel",
        }
    ) == TranscriptionDelta("u1", "Hel")
    assert parse(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "u1",
            "content_index": 0,
            "transcript": "Hello there.",
        }
    ) == TranscriptionCompleted("u1", "Hello there.")
    assert parse(
        {
            "type": "conversation.item.input_audio_transcription.failed",
            "item_id": "u1",
            "error": {"type": "transcription_error", "message": "audio unclear"},
        }
    ) == TranscriptionFailed("u1", "audio unclear")


def test_function_call_arguments_done() -> None:
    event = parse(
        {
            "type": "response.function_call_arguments.done",
            "response_id": "resp_1",
            "item_id": "item_fc",
            "output_index": 1,
            "call_id": "call_1",
            "name": "hangup",
            "arguments": '{"reason":"caller said goodbye"}',
        }
    )
    assert event == FunctionCall(
        "call_1", "hangup", '{"reason":"caller said goodbye"}', "item_fc", "resp_1"
    )


def test_other_modelled_events() -> None:
    assert parse({"type": "session.created", "session": {"id": "sess_1"}}) == SessionCreated(
        {"id": "sess_1"}
    )
    assert parse({"type": "session.updated", "session": {"voice": "x"}}) == SessionUpdated(
        {"voice": "x"}
    )
    assert parse({"type": "response.created", "response": {"id": "resp_3"}}) == ResponseCreated(
        "resp_3"
    )
    assert parse(
        {"type": "response.output_audio.done", "response_id": "r", "item_id": "i"}
    ) == AudioDone("r", "i")
    assert parse(
        {"type": "response.output_audio_transcript.delta", "item_id": "i", "delta": "Hi"}
    ) == AudioTranscriptDelta("i", "Hi")
    assert parse(
        {"type": "response.output_audio_transcript.done", "item_id": "i", "transcript": "Hi!"}
    ) == AudioTranscriptDone("i", "Hi!")
    assert parse(
        {"type": "conversation.item.truncated", "item_id": "i", "audio_end_ms": 640}
    ) == ItemTruncated("i", 640)


def test_wrongly_typed_fields_default_instead_of_crashing() -> None:
    assert parse(
        {"type": "input_audio_buffer.speech_started", "item_id": 7, "audio_start_ms": "10"}
    ) == SpeechStarted("", 0)
    assert parse(
        {"type": "input_audio_buffer.speech_started", "item_id": "u", "audio_start_ms": True}
    ) == SpeechStarted("u", 0)


@pytest.mark.parametrize(
    "kind",
    ["rate_limits.updated", "conversation.item.added", "response.output_text.delta", "x.new"],
)
def test_unknown_event_is_not_an_error(kind: str) -> None:
    obj = {"type": kind, "event_id": "ev", "extra": [1, 2]}
    event = parse(obj)
    assert event == UnknownEvent(kind, obj)


@pytest.mark.parametrize(
    "message",
    ["", "not json", "{", b"\xff\xfe\x00", "[]", '"response.done"', "42", "null", "{}"],
)
def test_not_an_event_object(message: str | bytes) -> None:
    with pytest.raises(RealtimeProtocolError):
        rt.parse_server_event(message)


@pytest.mark.parametrize("type_value", [None, 5, ["error"], {"a": 1}])
def test_type_must_be_a_string(type_value: Any) -> None:
    with pytest.raises(RealtimeProtocolError, match="'type'"):
        parse({"type": type_value})


def test_protocol_error_chains_the_json_error() -> None:
    with pytest.raises(RealtimeProtocolError, match="not JSON") as info:
        rt.parse_server_event("{oops")
    assert isinstance(info.value.__cause__, ValueError)
    assert isinstance(info.value, ProtocolError)


def test_session_update_gpt_realtime_2_fields_by_their_ga_names() -> None:
    cfg = rt.SessionConfig(
        model="gpt-realtime-2",
        reasoning_effort="low",
        parallel_tool_calls=False,
        truncation_retention_ratio=0.8,
    )
    s = rt.session_update(cfg)["session"]
    assert s["reasoning"] == {"effort": "low"}
    assert s["parallel_tool_calls"] is False
    assert s["truncation"] == {"type": "retention_ratio", "retention_ratio": 0.8}
    s = rt.session_update(rt.SessionConfig(truncation="disabled"))["session"]
    assert s["truncation"] == "disabled"
    assert "reasoning" not in s and "parallel_tool_calls" not in s


def test_parse_timeout_triggered() -> None:
    msg = (
        b'{"type":"input_audio_buffer.timeout_triggered","event_id":"event_1",'
        b'"audio_start_ms":1200,"audio_end_ms":7200,"item_id":"item_9"}'
    )
    assert rt.parse_server_event(msg) == rt.InputTimeout("item_9", 1200, 7200)


def test_parse_transcription_usage_duration_and_tokens() -> None:
    dur = rt.parse_server_event(
        b'{"type":"conversation.item.input_audio_transcription.completed","event_id":"e",'
        b'"item_id":"i","content_index":0,"transcript":"hi",'
        b'"usage":{"type":"duration","seconds":2.5}}'
    )
    assert dur == rt.TranscriptionCompleted("i", "hi", rt.TranscriptionUsage("duration", 2.5))
    tok = rt.parse_server_event(
        b'{"type":"conversation.item.input_audio_transcription.completed","event_id":"e",'
        b'"item_id":"i","content_index":0,"transcript":"hi","usage":{"type":"tokens",'
        b'"input_tokens":30,"output_tokens":5,"total_tokens":35,'
        b'"input_token_details":{"audio_tokens":28,"text_tokens":2}}}'
    )
    assert isinstance(tok, rt.TranscriptionCompleted)
    assert tok.usage == rt.TranscriptionUsage("tokens", 0.0, 28, 2, 5)
    bare = rt.parse_server_event(
        b'{"type":"conversation.item.input_audio_transcription.completed","item_id":"i",'
        b'"transcript":"x"}'
    )
    assert isinstance(bare, rt.TranscriptionCompleted) and bare.usage.kind == ""
