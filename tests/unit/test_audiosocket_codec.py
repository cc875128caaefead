"""Byte-literal tests of the sans-I/O AudioSocket codec (REFERENCE §2). No loop, no sockets."""

from __future__ import annotations

import uuid

import pytest

from agi_bridge.errors import AudioSocketError, ProtocolError
from agi_bridge.protocol import audiosocket as a
from agi_bridge.protocol.audiosocket import (
    MAX_PAYLOAD,
    Audio,
    AudioSocketParser,
    Dtmf,
    Error,
    Hangup,
    Uuid,
)

CALL_UUID = uuid.UUID("12345678-9abc-def0-1234-56789abcdef0")
PCM = bytes(range(256)) + bytes(64)  # 320 bytes, not all zero, so slicing errors show


def test_uuid_frame() -> None:
    events = AudioSocketParser().feed(b"\x01\x00\x10" + CALL_UUID.bytes)
    assert events == [Uuid(CALL_UUID)]


def test_audio_frame_8k() -> None:
    events = AudioSocketParser().feed(b"\x10\x01\x40" + PCM)
    assert events == [Audio(PCM, 8000)]
    assert isinstance(events[0], Audio)
    assert events[0].rate == 8000


def test_dtmf_frame() -> None:
    assert AudioSocketParser().feed(b"\x03\x00\x01" + b"5") == [Dtmf("5")]


@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_every_dtmf_digit(digit: str) -> None:
    assert AudioSocketParser().feed(b"\x03\x00\x01" + digit.encode()) == [Dtmf(digit)]


def test_lower_case_dtmf_letter_is_normalised() -> None:
    assert AudioSocketParser().feed(b"\x03\x00\x01b") == [Dtmf("B")]


def test_hangup_frame() -> None:
    assert AudioSocketParser().feed(b"\x00\x00\x00") == [Hangup()]


def test_error_frame_keeps_payload() -> None:
    assert AudioSocketParser().feed(b"\xff\x00\x02\x00\x07") == [Error(b"\x00\x07")]
    assert AudioSocketParser().feed(b"\xff\x00\x00") == [Error(b"")]


def test_empty_feed_and_partial_header_return_nothing() -> None:
    p = AudioSocketParser()
    assert p.feed(b"") == []
    assert p.feed(b"\x10") == []
    assert p.feed(b"\x01") == []
    assert p.buffered == 2
    assert p.feed(b"\x40" + PCM[:100]) == []
    assert p.buffered == 103
    assert p.feed(PCM[100:]) == [Audio(PCM)]
    assert p.buffered == 0


STREAM_PARTS: list[tuple[bytes, a.Event]] = [
    (b"\x01\x00\x10" + CALL_UUID.bytes, Uuid(CALL_UUID)),
    (b"\x10\x01\x40" + PCM, Audio(PCM)),
    (b"\x10\x00\x00", Audio(b"")),
    (b"\x03\x00\x01" + b"#", Dtmf("#")),
    (b"\x10\x01\x40" + PCM[::-1], Audio(PCM[::-1])),
    (b"\x12\x00\x04" + b"\x01\x02\x03\x04", Audio(b"\x01\x02\x03\x04", 16000)),
    (b"\xff\x00\x01\x09", Error(b"\x09")),
    (b"\x00\x00\x00", Hangup()),
]
STREAM = b"".join(raw for raw, _ in STREAM_PARTS)
EXPECTED = [event for _, event in STREAM_PARTS]


def test_stream_in_one_piece() -> None:
    p = AudioSocketParser()
    assert p.feed(STREAM) == EXPECTED
    assert p.buffered == 0


def test_stream_split_at_every_byte_boundary() -> None:
    for cut in range(len(STREAM) + 1):
        p = AudioSocketParser()
        events = p.feed(STREAM[:cut]) + p.feed(STREAM[cut:])
        assert events == EXPECTED, f"split at {cut}"
        assert p.buffered == 0


def test_stream_split_at_two_boundaries() -> None:
    # every pair of cuts around the frame boundaries of the first three frames
    limit = 3 + 16 + 3 + 320 + 6
    for i in range(0, limit, 7):
        for j in range(i, limit, 5):
            p = AudioSocketParser()
            events = p.feed(STREAM[:i]) + p.feed(STREAM[i:j]) + p.feed(STREAM[j:])
            assert events == EXPECTED, f"split at {i}, {j}"


def test_stream_one_byte_at_a_time() -> None:
    p = AudioSocketParser()
    events: list[a.Event] = []
    max_buffered = 0
    for i in range(len(STREAM)):
        events += p.feed(STREAM[i : i + 1])
        max_buffered = max(max_buffered, p.buffered)
    assert events == EXPECTED
    assert p.buffered == 0
    # never more than one incomplete frame (header + largest payload here) is held
    assert max_buffered == 3 + 320 - 1


def test_events_come_out_as_soon_as_each_frame_completes() -> None:
    p = AudioSocketParser()
    first = b"\x03\x00\x01" + b"1"
    second = b"\x10\x01\x40" + PCM
    assert p.feed(first + second[:5]) == [Dtmf("1")]
    assert p.buffered == 5
    assert p.feed(second[5:]) == [Audio(PCM)]


def test_buffered_stays_bounded_under_many_frames() -> None:
    p = AudioSocketParser()
    chunk = (b"\x10\x01\x40" + PCM) * 50
    for _ in range(20):
        # feed in odd-sized slices so a partial frame is usually pending
        for k in range(0, len(chunk), 997):
            p.feed(chunk[k : k + 997])
            assert p.buffered < 3 + 320
    assert p.buffered == 0


def test_oversized_length_fails_on_the_header_alone() -> None:
    p = AudioSocketParser()
    # just the header: the parser must not wait for 65000 bytes of payload
    with pytest.raises(AudioSocketError) as info:
        p.feed(b"\x10\xfd\xe8")
    msg = str(info.value)
    assert "too large" in msg
    assert "0x10" in msg
    assert "65000" in msg
    assert str(MAX_PAYLOAD) in msg
    assert p.buffered == 0


def test_oversized_length_after_good_frames_in_the_same_feed() -> None:
    p = AudioSocketParser()
    with pytest.raises(AudioSocketError, match="too large"):
        p.feed(b"\x03\x00\x01" + b"1" + b"\x10\xff\xff")


def test_max_payload_boundary() -> None:
    p = AudioSocketParser(max_payload=4)
    assert p.feed(b"\x10\x00\x04" + b"abcd") == [Audio(b"abcd")]
    with pytest.raises(AudioSocketError, match="length 6 > 4"):
        p.feed(b"\x10\x00\x06")


def test_default_max_payload_admits_largest_legitimate_frame() -> None:
    # 20 ms at 192 kHz slin16 = 7680 bytes must parse
    pcm = bytes(7680)
    assert AudioSocketParser().feed(b"\x18\x1e\x00" + pcm) == [Audio(pcm, 192000)]


def test_parser_stays_poisoned_after_an_error() -> None:
    p = AudioSocketParser()
    with pytest.raises(AudioSocketError) as first:
        p.feed(b"\x10\xff\xff")
    for data in (b"", b"\x00\x00\x00", b"\x10\x01\x40" + PCM):
        with pytest.raises(AudioSocketError) as again:
            p.feed(data)
        assert str(again.value) == str(first.value)


def test_unknown_type_names_the_type() -> None:
    p = AudioSocketParser()
    with pytest.raises(AudioSocketError, match="unknown type 0x42"):
        p.feed(b"\x42\x00\x02xy")
    with pytest.raises(AudioSocketError, match="0x42"):
        p.feed(b"\x00\x00\x00")


@pytest.mark.parametrize("kind", [0x02, 0x04, 0x0F, 0x19, 0x20, 0xFE])
def test_other_unassigned_types_are_errors(kind: int) -> None:
    with pytest.raises(AudioSocketError, match=f"0x{kind:02x}"):
        AudioSocketParser().feed(bytes([kind]) + b"\x00\x00")


def test_odd_length_audio() -> None:
    with pytest.raises(AudioSocketError, match="odd length 3"):
        AudioSocketParser().feed(b"\x10\x00\x03abc")


def test_odd_length_higher_rate_audio() -> None:
    with pytest.raises(AudioSocketError, match="odd length 1"):
        AudioSocketParser().feed(b"\x13\x00\x01a")


@pytest.mark.parametrize("n", [0, 15, 17, 32])
def test_bad_uuid_length(n: int) -> None:
    with pytest.raises(AudioSocketError, match=f"16 bytes, got {n}"):
        AudioSocketParser().feed(b"\x01" + n.to_bytes(2, "big") + bytes(n))


@pytest.mark.parametrize("payload", [b"", b"12", b"x", b"E", b"\xff", b" "])
def test_bad_dtmf(payload: bytes) -> None:
    raw = b"\x03" + len(payload).to_bytes(2, "big") + payload
    with pytest.raises(AudioSocketError, match="DTMF"):
        AudioSocketParser().feed(raw)


@pytest.mark.parametrize(
    ("kind", "rate"),
    [
        (0x11, 12000),
        (0x12, 16000),
        (0x13, 24000),
        (0x14, 32000),
        (0x15, 44100),
        (0x16, 48000),
        (0x17, 96000),
        (0x18, 192000),
    ],
)
def test_higher_rate_slin_types(kind: int, rate: int) -> None:
    assert AudioSocketParser().feed(bytes([kind]) + b"\x00\x02\x34\x12") == [
        Audio(b"\x34\x12", rate)
    ]


def test_errors_are_protocol_errors() -> None:
    assert issubclass(AudioSocketError, ProtocolError)


# ------------------------------------------------------------------------- serializers


def test_serializer_bytes() -> None:
    assert a.audio_frame(PCM) == b"\x10\x01\x40" + PCM
    assert a.hangup_frame() == b"\x00\x00\x00"
    assert a.uuid_frame(CALL_UUID) == b"\x01\x00\x10" + CALL_UUID.bytes
    assert a.dtmf_frame("5") == b"\x03\x00\x01" + b"5"
    assert a.frame(0xFF, b"\x01") == b"\xff\x00\x01\x01"
    assert a.frame(0x10) == b"\x10\x00\x00"


def test_length_is_big_endian() -> None:
    assert a.frame(0x10, bytes(0x0102))[:3] == b"\x10\x01\x02"


def test_serializers_round_trip_through_parser() -> None:
    data = (
        a.uuid_frame(CALL_UUID)
        + a.audio_frame(PCM)
        + a.dtmf_frame("*")
        + a.frame(0x16, b"\x01\x00" * 960)
        + a.hangup_frame()
    )
    assert AudioSocketParser().feed(data) == [
        Uuid(CALL_UUID),
        Audio(PCM),
        Dtmf("*"),
        Audio(b"\x01\x00" * 960, 48000),
        Hangup(),
    ]


def test_serializer_rejects_payload_over_uint16() -> None:
    assert len(a.frame(0x10, bytes(0xFFFF))) == 3 + 0xFFFF
    with pytest.raises(AudioSocketError, match="65536"):
        a.frame(0x10, bytes(0x10000))
