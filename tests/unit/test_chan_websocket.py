"""chan_websocket control messages, both formats, with the exact strings of chan_websocket.c."""

from __future__ import annotations

import pytest

from agi_bridge.errors import RtpError
from agi_bridge.protocol.chan_websocket import (
    BufferingCompleted,
    Command,
    DtmfEnd,
    Error,
    MarkProcessed,
    MediaStart,
    MediaXoff,
    MediaXon,
    MessageFormat,
    QueueDrained,
    Status,
    UnknownEvent,
    parse_event,
    serialize_command,
)

PLAIN = MessageFormat.PLAIN_TEXT
JSON = MessageFormat.JSON


def test_media_start_plain_text() -> None:
    text = (
        "MEDIA_START connection_id:5b1c channel:WebSocket/INCOMING/0x7f00 "
        "channel_id:1700000000.12 format:ulaw optimal_frame_size:160 ptime:20"
    )
    assert parse_event(text) == MediaStart(
        "5b1c", "WebSocket/INCOMING/0x7f00", "1700000000.12", "ulaw", 160, 20
    )


def test_media_start_json_with_variables() -> None:
    text = (
        '{"event":"MEDIA_START","connection_id":"5b1c","channel":"WebSocket/x",'
        '"channel_id":"1.2","format":"ulaw","optimal_frame_size":160,"ptime":20,'
        '"channel_variables":{"MEDIA_WEBSOCKET_CONNECTION_ID":"5b1c"}}'
    )
    event = parse_event(text)
    assert isinstance(event, MediaStart)
    assert event.optimal_frame_size == 160
    assert event.channel_variables == {"MEDIA_WEBSOCKET_CONNECTION_ID": "5b1c"}


@pytest.mark.parametrize(
    ("text", "event"),
    [
        ("MEDIA_XOFF", MediaXoff()),
        ("MEDIA_XON", MediaXon()),
        ("QUEUE_DRAINED", QueueDrained()),
        ("MEDIA_BUFFERING_COMPLETED b7", BufferingCompleted("b7")),
        ("MEDIA_MARK_PROCESSED m1", MarkProcessed("m1")),
        ("MEDIA_MARK_PROCESSED", MarkProcessed("")),
        ("DTMF_END digit:# channel_id:1.2", DtmfEnd("#")),
        (
            "ERROR channel_id:1.2 error_text:FLUSH_MEDIA not supported in passthrough mode",
            Error("FLUSH_MEDIA not supported in passthrough mode"),
        ),
        ("STATUS channel_id:1 queue_length:3", Status({"channel_id": "1", "queue_length": "3"})),
        ("SOMETHING_NEW a:b", UnknownEvent("SOMETHING_NEW")),
        ('{"event":"MEDIA_XOFF","channel_id":"1.2"}', MediaXoff()),
        ('{"event":"DTMF_END","channel_id":"1.2","digit":"5"}', DtmfEnd("5")),
        (
            '{"event":"MEDIA_MARK_PROCESSED","channel_id":"1","correlation_id":"m"}',
            MarkProcessed("m"),
        ),
        ('{"event":"ERROR","channel_id":"1","error_text":"bad"}', Error("bad")),
        ('{"event":"LATER"}', UnknownEvent("LATER")),
    ],
)
def test_events(text: str, event: object) -> None:
    assert parse_event(text) == event


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("MEDIA_START connection_id:1 format:ulaw", "lacks optimal_frame_size"),
        ("MEDIA_START connection_id:1 format:ulaw optimal_frame_size:x ptime:20", "bad number"),
        ("DTMF_END digit:12", "one character"),
        ("DTMF_END digit", "field without ':'"),
        ("{not json", "not valid JSON"),
        ('{"command":"X"}', "no string 'event'"),
        ('{"event":"MEDIA_START","channel_variables":[]}', "channel_variables is not an object"),
    ],
)
def test_malformed_events(text: str, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        parse_event(text)


def test_commands_plain_text() -> None:
    assert serialize_command(Command.FLUSH_MEDIA, PLAIN) == "FLUSH_MEDIA"
    assert serialize_command(Command.MARK_MEDIA, PLAIN, "m1") == "MARK_MEDIA m1"
    assert serialize_command(Command.HANGUP, PLAIN) == "HANGUP"


def test_commands_json() -> None:
    assert serialize_command(Command.FLUSH_MEDIA, JSON) == '{"command":"FLUSH_MEDIA"}'
    assert (
        serialize_command(Command.STOP_MEDIA_BUFFERING, JSON, "b")
        == '{"command":"STOP_MEDIA_BUFFERING","correlation_id":"b"}'
    )


def test_commands_asterisk_would_ignore_are_refused() -> None:
    with pytest.raises(RtpError, match="takes no correlation id"):
        serialize_command(Command.FLUSH_MEDIA, PLAIN, "x")
    with pytest.raises(RtpError, match="one word"):
        serialize_command(Command.MARK_MEDIA, PLAIN, "a b")
    with pytest.raises(RtpError, match="too long"):
        serialize_command(Command.MARK_MEDIA, PLAIN, "x" * 200)
