"""ARI event shapes (agi_bridge.protocol.ari) from literal JSON as Asterisk sends it."""

from __future__ import annotations

import pytest

from agi_bridge.protocol.ari import (
    AriProtocolError,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    StasisEnd,
    StasisStart,
    UnknownEvent,
    parse_event,
    parse_stasis_args,
)

CHANNEL = (
    '{"id":"1700.1","name":"PJSIP/6001-00000001","state":"Ring",'
    '"caller":{"name":"Alice","number":"6001"},"connected":{"name":"","number":""},'
    '"dialplan":{"context":"agi-bridge-phones","exten":"102","priority":2,'
    '"app_name":"Stasis","app_data":"agi-bridge,sales,lang=de"},'
    '"channelvars":{"X":"1"},"language":"en"}'
)


def test_stasis_start() -> None:
    text = (
        '{"type":"StasisStart","timestamp":"2026-12-01T15:00:00.000+0000",'
        '"args":["sales","lang=de"],"channel":' + CHANNEL + ',"application":"agi-bridge"}'
    )
    assert parse_event(text) == StasisStart(
        Channel(
            "1700.1",
            "PJSIP/6001-00000001",
            "Ring",
            "6001",
            "Alice",
            "agi-bridge-phones",
            "102",
            {"X": "1"},
        ),
        ("sales", "lang=de"),
        "agi-bridge",
    )


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('{"type":"StasisEnd","channel":' + CHANNEL + "}", StasisEnd),
        (
            '{"type":"ChannelDestroyed","cause":16,"cause_txt":"Normal","channel":' + CHANNEL + "}",
            ChannelDestroyed,
        ),
        (
            '{"type":"ChannelHangupRequest","cause":16,"channel":' + CHANNEL + "}",
            ChannelHangupRequest,
        ),
        (
            '{"type":"ChannelDtmfReceived","digit":"#","duration_ms":100,"channel":'
            + CHANNEL
            + "}",
            ChannelDtmfReceived,
        ),
    ],
)
def test_channel_events(text: str, kind: type) -> None:
    event = parse_event(text)
    assert isinstance(event, kind)
    assert event.channel.id == "1700.1"  # type: ignore[attr-defined]


def test_dtmf_digit_and_destroyed_cause() -> None:
    dtmf = parse_event('{"type":"ChannelDtmfReceived","digit":"5","channel":{"id":"a"}}')
    assert dtmf == ChannelDtmfReceived(Channel("a"), "5", 0)
    gone = parse_event(
        '{"type":"ChannelDestroyed","cause":16,"cause_txt":"Normal","channel":{"id":"a"}}'
    )
    assert gone == ChannelDestroyed(Channel("a"), 16, "Normal")


def test_unknown_events_are_tolerated() -> None:
    assert parse_event('{"type":"ChannelVarset","variable":"x"}') == UnknownEvent("ChannelVarset")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope", "not valid JSON"),
        ("[1]", "string 'type'"),
        ('{"type":"StasisStart","args":"x","channel":{"id":"a"}}', "'args' is not a list"),
        ('{"type":"StasisEnd","channel":{}}', "without a string 'id'"),
        ('{"type":"ChannelDtmfReceived","digit":"12","channel":{"id":"a"}}', "one character"),
    ],
)
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(AriProtocolError, match=message):
        parse_event(text)


def test_stasis_args() -> None:
    assert parse_stasis_args(()) == (None, {})
    assert parse_stasis_args(("",)) == (None, {})
    assert parse_stasis_args(("sales", "lang=de", "vip=")) == ("sales", {"lang": "de", "vip": ""})
    with pytest.raises(AriProtocolError, match="not key=value"):
        parse_stasis_args(("sales", "oops"))
