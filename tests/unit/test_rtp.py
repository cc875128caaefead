"""RTP codec (agi_bridge.protocol.rtp) with byte literals: RFC 3550 header, RFC 4733 events."""

from __future__ import annotations

import random

import pytest

from agi_bridge.errors import RtpError
from agi_bridge.protocol.rtp import (
    Audio,
    Dtmf,
    Packet,
    RtpReceiver,
    RtpSender,
    TelephoneEvent,
    is_rtcp,
    parse_packet,
)

SSRC = b"\xde\xad\xbe\xef"


def pcmu(seq: int, payload: bytes = b"\xff" * 4, ssrc: bytes = SSRC, ts: int = 0) -> bytes:
    return b"\x80\x00" + seq.to_bytes(2, "big") + ts.to_bytes(4, "big") + ssrc + payload


def event(seq: int, ts: int, digit: int, end: bool, duration: int = 800) -> bytes:
    flags = 0x8A if end else 0x0A
    return (
        b"\x80\x65"
        + seq.to_bytes(2, "big")
        + ts.to_bytes(4, "big")
        + SSRC
        + bytes([digit, flags])
        + duration.to_bytes(2, "big")
    )


def test_parse_minimal_packet() -> None:
    packet = parse_packet(b"\x80\x00\x12\x34\x00\x00\x00\xa0\xde\xad\xbe\xef\x7f\xff")
    assert packet == Packet(0, 0x1234, 160, 0xDEADBEEF, b"\x7f\xff", marker=False)


def test_marker_bit_and_payload_type() -> None:
    packet = parse_packet(b"\x80\xe5\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x01\x02\x03\x04")
    assert packet.marker is True
    assert packet.payload_type == 101


def test_csrc_extension_and_padding_are_skipped() -> None:
    data = (
        b"\xb2\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x01"  # V=2 P=1 X=1 CC=2
        + b"\x00\x00\x00\x02\x00\x00\x00\x03"  # two CSRCs
        + b"\xbe\xde\x00\x01\x11\x22\x33\x44"  # extension: profile, 1 word
        + b"\xaa\xbb"  # payload
        + b"\x00\x00\x03"  # 3 bytes of padding, last byte is the count
    )
    assert parse_packet(data).payload == b"\xaa\xbb"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x00\x00", "too short: need 12 bytes, got 3"),
        (b"\x40\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01", "RTP version 1"),
        (b"\x81\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01", "1 CSRCs need 16 bytes"),
        (b"\x90\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\xbe\xde", "no extension header"),
        (
            b"\x90\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\xbe\xde\x00\x02\x00",
            "2 words announced",
        ),
        (b"\xa0\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\xaa\x09", "padding length 9"),
        (b"\xa0\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\xaa\x00", "padding length 0"),
        (b"\x80\x00" + b"\x00" * 1500, "too large"),
    ],
)
def test_malformed_packets_raise_with_reason(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        parse_packet(data)


def test_serialize_round_trip() -> None:
    packet = Packet(0, 65535, 0xFFFFFFFF, 1, b"\x01\x02", marker=True)
    assert packet.serialize() == b"\x80\x80\xff\xff\xff\xff\xff\xff\x00\x00\x00\x01\x01\x02"
    assert parse_packet(packet.serialize()) == packet


def test_sender_stamps_sequence_and_timestamp_from_random_start() -> None:
    sender = RtpSender(rng=random.Random(7))
    first = parse_packet(sender.packet(b"\xff" * 160))
    second = parse_packet(sender.packet(b"\xff" * 160))
    assert first.marker and not second.marker
    assert second.sequence == (first.sequence + 1) & 0xFFFF
    assert second.timestamp == (first.timestamp + 160) & 0xFFFFFFFF
    assert first.ssrc == second.ssrc == sender.ssrc
    other = RtpSender(rng=random.Random(8))
    assert (other.ssrc, other.sequence) != (sender.ssrc, first.sequence)


def test_sender_wraps_sequence_and_timestamp() -> None:
    sender = RtpSender(rng=random.Random(1))
    sender.sequence, sender.timestamp = 0xFFFF, 0xFFFFFFA0
    sender.packet(b"\x00")
    last = parse_packet(sender.packet(b"\x00"))
    assert (last.sequence, last.timestamp) == (0, 0x40)


def test_in_order_audio_is_delivered_at_once() -> None:
    receiver = RtpReceiver()
    assert receiver.feed(pcmu(10, b"\x01")) == [Audio(b"\x01")]
    assert receiver.feed(pcmu(11, b"\x02")) == [Audio(b"\x02")]


def test_reordered_packets_come_out_in_order() -> None:
    receiver = RtpReceiver(window=4)
    assert receiver.feed(pcmu(1, b"\x01")) == [Audio(b"\x01")]
    assert receiver.feed(pcmu(3, b"\x03")) == []
    assert receiver.feed(pcmu(2, b"\x02")) == [Audio(b"\x02"), Audio(b"\x03")]
    assert receiver.stats.lost == 0


def test_sequence_wraparound() -> None:
    receiver = RtpReceiver()
    assert receiver.feed(pcmu(0xFFFF, b"\x01")) == [Audio(b"\x01")]
    assert receiver.feed(pcmu(0x0001, b"\x03")) == []
    assert receiver.feed(pcmu(0x0000, b"\x02")) == [Audio(b"\x02"), Audio(b"\x03")]


def test_loss_is_counted_and_skipped_when_the_window_fills() -> None:
    receiver = RtpReceiver(window=3)
    receiver.feed(pcmu(1, b"\x01"))
    assert receiver.feed(pcmu(3, b"\x03")) == []
    assert receiver.feed(pcmu(4, b"\x04")) == []
    assert receiver.feed(pcmu(5, b"\x05")) == [Audio(b"\x03"), Audio(b"\x04"), Audio(b"\x05")]
    assert receiver.stats.lost == 1
    # the lost packet arriving afterwards is late and dropped
    assert receiver.feed(pcmu(2, b"\x02")) == []
    assert receiver.stats.late == 1


def test_duplicates_are_dropped() -> None:
    receiver = RtpReceiver()
    receiver.feed(pcmu(1))
    receiver.feed(pcmu(3))
    assert receiver.feed(pcmu(3)) == []
    assert receiver.stats.duplicates == 1
    assert receiver.feed(pcmu(1)) == []  # already delivered: late
    assert receiver.stats.late == 1


def test_ssrc_change_starts_over() -> None:
    receiver = RtpReceiver()
    receiver.feed(pcmu(100, b"\x01"))
    receiver.feed(pcmu(102, b"\x02"))  # held, waiting for 101
    assert receiver.feed(pcmu(5000, b"\x09", ssrc=b"\x00\x00\x00\x02")) == [Audio(b"\x09")]
    assert receiver.stats.ssrc_changes == 1


def test_big_jump_restarts_instead_of_waiting() -> None:
    receiver = RtpReceiver()
    receiver.feed(pcmu(1))
    assert receiver.feed(pcmu(30000, b"\x07")) == [Audio(b"\x07")]


def test_rtcp_is_recognised_and_ignored() -> None:
    receiver_report = b"\x80\xc9\x00\x01\xde\xad\xbe\xef"
    assert is_rtcp(receiver_report)
    receiver = RtpReceiver()
    assert receiver.feed(receiver_report) == []
    assert receiver.stats.rtcp == 1
    assert not is_rtcp(pcmu(1))


def test_telephone_event_one_digit_per_key_press() -> None:
    receiver = RtpReceiver()
    packets = [
        event(1, 8000, 5, end=False, duration=160),
        event(2, 8000, 5, end=False, duration=320),
        event(3, 8000, 5, end=True),
        event(4, 8000, 5, end=True),  # RFC 4733 §2.5.1.4: end packet sent three times
        event(5, 8000, 5, end=True),
        event(6, 9600, 11, end=True),  # '#', only its end packets arrived
        event(7, 11200, 5, end=False),  # the same key again: a new press
    ]
    digits = [e for p in packets for e in receiver.feed(p)]
    assert digits == [Dtmf("5"), Dtmf("#"), Dtmf("5")]


def test_telephone_event_payload() -> None:
    assert TelephoneEvent.parse(b"\x0a\x8a\x03\x20") == TelephoneEvent(10, True, 10, 800)
    assert TelephoneEvent(10, True, 10, 800).serialize() == b"\x0a\x8a\x03\x20"
    with pytest.raises(RtpError, match="telephone-event payload too short"):
        TelephoneEvent.parse(b"\x01")


def test_unknown_payload_types_are_counted_not_delivered() -> None:
    receiver = RtpReceiver()
    assert receiver.feed(b"\x80\x08\x00\x01" + b"\x00" * 8 + b"\xd5") == []
    assert receiver.stats.other_payload == 1
