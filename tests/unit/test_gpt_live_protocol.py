"""GPT-Live codec: JSON literals in, typed events out; builders give the documented shapes."""

from __future__ import annotations

import json

import pytest

from agi_bridge.errors import RealtimeProtocolError
from agi_bridge.protocol import gpt_live as gl


def test_session_start_client_delegation_pcmu() -> None:
    msg = gl.session_start(gl.LiveSessionConfig(instructions="Be brief."))
    assert gl.encode(msg) == (
        '{"type":"session.start","event_id":"event_start","session":{"model":"gpt-live-1",'
        '"instructions":"Be brief.","audio":{"input":{"format":{"type":"audio/pcmu",'
        '"rate":8000}},"output":{"format":{"type":"audio/pcmu","rate":8000},'
        '"voice":"marin"}},"delegation":{"type":"client"}}}'
    )


def test_session_start_responses_delegation_with_tools() -> None:
    tool = {"type": "function", "name": "hangup", "parameters": {"type": "object"}}
    cfg = gl.LiveSessionConfig(delegation="responses", backend_model="gpt-5.5", tools=(tool,))
    delegation = gl.session_start(cfg)["session"]["delegation"]
    assert delegation == {
        "type": "responses",
        "responses": {"model": "gpt-5.5", "tools": [tool], "tool_choice": "auto"},
    }


def test_client_builders() -> None:
    assert gl.input_audio_append(b"\xff\x7f") == {
        "type": "session.input_audio.append",
        "audio": "/38=",
    }
    assert gl.encode(gl.input_audio_append(b"\xff\x7f")) == (
        '{"type":"session.input_audio.append","audio":"/38="}'
    )
    assert gl.commentary_append("Done.", "del_1") == {
        "type": "session.commentary.append",
        "content": "Done.",
        "delegation_id": "del_1",
    }
    assert gl.thinking_append("ctx") == {
        "type": "session.thinking.append",
        "content": "ctx",
        "delegation_id": None,  # required, nullable
    }
    assert gl.encode(gl.instructions_append("Say goodbye.")) == (
        '{"type":"session.instructions.append","content":"Say goodbye.","delegation_id":null}'
    )
    assert gl.function_call_output("call_1", '{"ok":true}') == {
        "type": "response.item.create",
        "item": {"type": "function_call_output", "call_id": "call_1", "output": '{"ok":true}'},
    }
    assert gl.response_create() == {"type": "response.create"}
    assert gl.session_close() == {"type": "session.close"}


def test_parse_server_events() -> None:
    p = gl.parse_server_event
    assert p(b'{"type":"session.output_audio.delta","delta":"/38="}') == gl.OutputAudio(b"\xff\x7f")
    assert p(
        b'{"type":"session.started","event_id":"e","session":{"id":"sess_1","model":"gpt-live-1"}}'
    ) == gl.SessionStarted({"id": "sess_1", "model": "gpt-live-1"}, "sess_1")
    assert p(
        b'{"type":"session.input_transcript.delta","event_id":"e","delta":"hi","start_ms":100,'
        b'"end_ms":400}'
    ) == gl.InputTranscript("hi", 100, 400)
    assert p(
        b'{"type":"session.output_transcript.delta","event_id":"e","delta":"Hello","start_ms":5,'
        b'"end_ms":9}'
    ) == gl.OutputTranscript("Hello", 5, 9)
    assert p(
        b'{"type":"session.delegation.created","event_id":"e","offset_ms":4600,'
        b'"delegation":{"type":"delegation","id":"del_1","target":"client"}}'
    ) == gl.DelegationCreated("del_1", "client", 4600)
    assert p(
        b'{"type":"session.usage.updated","event_id":"e","usage":{"seconds":7}}'
    ) == gl.UsageUpdated(7.0)
    assert p(
        b'{"type":"error","event_id":"e","error":{"type":"invalid_request_error",'
        b'"code":"unknown_parameter","message":"Unknown parameter","client_event_id":"x"}}'
    ) == gl.ErrorEvent("invalid_request_error", "unknown_parameter", "Unknown parameter", "x")
    assert p(
        b'{"type":"session.closed","event_id":"e","reason":"close_requested",'
        b'"session":{"id":"s"},"usage":{"seconds":12.5}}'
    ) == gl.SessionClosed("close_requested", 12.5)


def test_function_call_inside_response_event() -> None:
    msg = {
        "type": "response.event",
        "event_id": "e",
        "delegation_id": "del_7",
        "event": {
            "type": "response.output_item.done",
            "item": {
                "type": "function_call",
                "call_id": "call_1",
                "name": "send_dtmf",
                "arguments": '{"digits":"1"}',
            },
        },
    }
    assert gl.parse_server_event(json.dumps(msg)) == gl.FunctionCall(
        "call_1", "send_dtmf", '{"digits":"1"}', "del_7"
    )
    other = {"type": "response.event", "event": {"type": "response.created"}}
    assert gl.parse_server_event(json.dumps(other)) == gl.ResponseEvent(
        {"type": "response.created"}
    )


def test_unknown_events_are_tolerated_and_garbage_is_not() -> None:
    assert gl.parse_server_event(b'{"type":"transport.ringing"}') == gl.UnknownEvent(
        "transport.ringing", {"type": "transport.ringing"}
    )
    with pytest.raises(RealtimeProtocolError, match="not JSON"):
        gl.parse_server_event(b"{nope")
    with pytest.raises(RealtimeProtocolError, match="string 'type'"):
        gl.parse_server_event(b'{"type":1}')
    with pytest.raises(RealtimeProtocolError, match="not base64"):
        gl.parse_server_event(b'{"type":"session.output_audio.delta","delta":"!!"}')
