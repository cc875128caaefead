"""RTP (RFC 3550) for one µ-law stream, sans-I/O: bytes in, events out; no sockets.

What the ARI externalMedia path needs from RTP and nothing more:

- :func:`parse_packet` / :func:`Packet.serialize`: the fixed header (version 2), padding,
  CSRC list and header extension (skipped), the marker bit.
- :class:`RtpSender` stamps sequence numbers and timestamps (+160 a 20 ms PCMU frame) from
  random initial values (RFC 3550 §5.1) with one random SSRC.
- :class:`RtpReceiver` turns packets into caller audio and DTMF events: a small bounded
  reorder window, sequence wrap-around, duplicates and late packets dropped, losses counted
  and tolerated, an SSRC change starts over, RTCP (payload types 200-204 on the same port,
  RFC 5761) recognised and ignored, RFC 4733 telephone-events turned into one digit each.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

from agi_bridge.errors import RtpError
from agi_bridge.protocol import dtmf

HEADER = struct.Struct(">BBHII")
HEADER_SIZE = HEADER.size  # 12
RTP_VERSION = 2
PT_PCMU = 0  # RFC 3551 static payload type for G.711 µ-law, 8 kHz
PCMU_FRAME_SAMPLES = 160  # 20 ms at 8 kHz, one byte a sample
# Asterisk's default dynamic payload type for telephone-event (REFERENCE §1: tshark sees
# 101). The receiver accepts any type configured here; a second one can be added.
PT_TELEPHONE_EVENT = 101
RTCP_TYPES = range(200, 205)  # SR, RR, SDES, BYE, APP (RFC 3550 §6; RFC 5761 §4)
MAX_PACKET = 1500  # anything bigger is not one RTP packet of telephony audio
DTMF_EVENTS = dtmf.DIGITS  # RFC 4733 §3.2: events 0-15, in protocol/dtmf.py
MAX_JUMP = 1000  # sequence jumps beyond this (20 s of audio) restart the stream


@dataclass(frozen=True, slots=True)
class Packet:
    """One RTP packet. ``payload`` excludes padding; CSRCs and extension are not kept."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def serialize(self) -> bytes:
        """The packet on the wire: version 2, no padding, no CSRC, no extension."""
        if not 0 <= self.payload_type <= 127:
            raise RtpError(f"RTP payload type out of range: {self.payload_type}")
        return (
            HEADER.pack(
                RTP_VERSION << 6,
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc & 0xFFFFFFFF,
            )
            + self.payload
        )


@dataclass(frozen=True, slots=True)
class Rtcp:
    """An RTCP packet multiplexed on the RTP port; recognised so that it is ignored."""

    packet_type: int


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 §4: the second byte of RTCP is its packet type 200-204 (marker bit set)."""
    return len(data) >= 2 and data[1] in RTCP_TYPES


def parse_packet(data: bytes) -> Packet:
    """Parse one RTP packet (one UDP datagram). Raises RtpError naming what is wrong."""
    if len(data) < HEADER_SIZE:
        raise RtpError(f"RTP packet too short: need {HEADER_SIZE} bytes, got {len(data)}")
    if len(data) > MAX_PACKET:
        raise RtpError(f"RTP packet too large: {len(data)} > {MAX_PACKET} bytes")
    first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
    version = first >> 6
    if version != RTP_VERSION:
        raise RtpError(f"RTP version {version}, expected 2")
    has_padding = bool(first & 0x20)
    has_extension = bool(first & 0x10)
    csrc_count = first & 0x0F
    offset = HEADER_SIZE + 4 * csrc_count
    if offset > len(data):
        raise RtpError(f"RTP packet truncated: {csrc_count} CSRCs need {offset} bytes")
    if has_extension:
        if offset + 4 > len(data):
            raise RtpError("RTP header extension truncated: no extension header")
        (words,) = struct.unpack_from(">H", data, offset + 2)
        offset += 4 + 4 * words
        if offset > len(data):
            raise RtpError(f"RTP header extension truncated: {words} words announced")
    end = len(data)
    if has_padding:
        pad = data[-1]
        if pad == 0 or offset + pad > end:
            raise RtpError(f"RTP padding length {pad} invalid for a {end}-byte packet")
        end -= pad
    return Packet(
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=bytes(data[offset:end]),
        marker=bool(second & 0x80),
    )


class RtpSender:
    """Stamps outgoing 20 ms PCMU frames. Initial sequence, timestamp and SSRC are random
    (RFC 3550 §5.1: makes known-plaintext attacks harder, tells restarted streams apart)."""

    def __init__(self, *, rng: random.Random | None = None, payload_type: int = PT_PCMU):
        rng = rng or random.SystemRandom()
        self.payload_type = payload_type
        self.ssrc = rng.getrandbits(32)
        self.sequence = rng.getrandbits(16)
        self.timestamp = rng.getrandbits(32)
        self._first = True
        self.packets_sent = 0

    def packet(self, payload: bytes, *, samples: int = PCMU_FRAME_SAMPLES) -> bytes:
        """The next packet carrying ``payload``; the first one has the marker bit (start
        of a talkspurt, RFC 3551 §4.1)."""
        data = Packet(
            self.payload_type, self.sequence, self.timestamp, self.ssrc, payload, self._first
        ).serialize()
        self._first = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        self.packets_sent += 1
        return data


# ------------------------------------------------------------------------- receiving


@dataclass(frozen=True, slots=True)
class Audio:
    """Caller audio: the payload of one in-order PCMU packet."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Dtmf:
    """One key press (RFC 4733 event 0-15), reported once, at the first packet of it."""

    digit: str


RtpEvent = Audio | Dtmf


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The payload of an RFC 4733 telephone-event packet (§2.3)."""

    event: int
    end: bool
    volume: int
    duration: int

    @staticmethod
    def parse(payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise RtpError(f"telephone-event payload too short: need 4 bytes, got {len(payload)}")
        event, flags, duration = struct.unpack_from(">BBH", payload)
        return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        return struct.pack(
            ">BBH", self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration
        )


def _seq_delta(a: int, b: int) -> int:
    """How far sequence ``a`` is ahead of ``b``, in -32768..32767 (wrap-around aware)."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


@dataclass
class ReceiverStats:
    received: int = 0
    lost: int = 0  # sequence numbers never seen (skipped over)
    duplicates: int = 0
    late: int = 0  # arrived after the window had moved past them
    rtcp: int = 0
    other_payload: int = 0  # payload types that are neither PCMU nor telephone-event
    ssrc_changes: int = 0


@dataclass
class RtpReceiver:
    """In-order delivery from a reorder window of ``window`` packets.

    Packets are held until the gap before them is filled or the window is full; then the
    gap counts as lost and delivery moves on. A packet older than what was delivered is
    late (dropped); one already held or delivered is a duplicate (dropped). A new SSRC
    (the far end restarted its stream) flushes nothing old and starts over.
    """

    window: int = 4
    telephone_event_type: int = PT_TELEPHONE_EVENT
    stats: ReceiverStats = field(default_factory=ReceiverStats)
    _ssrc: int | None = None
    _next: int = 0  # the next sequence number to deliver
    _held: dict[int, Packet] = field(default_factory=dict)
    _event_timestamp: int | None = None  # RTP timestamp of the last DTMF event reported

    def feed(self, datagram: bytes) -> list[RtpEvent]:
        """One UDP datagram in, the events it releases out (may be none)."""
        if is_rtcp(datagram):
            self.stats.rtcp += 1
            return []
        packet = parse_packet(datagram)
        self.stats.received += 1
        if packet.ssrc != self._ssrc:
            if self._ssrc is not None:
                self.stats.ssrc_changes += 1
            self._ssrc = packet.ssrc
            self._held.clear()
            self._next = packet.sequence
            self._event_timestamp = None
        delta = _seq_delta(packet.sequence, self._next)
        if delta > MAX_JUMP:
            # A jump this far is a restarted sender, not loss: start over from here.
            self._held.clear()
            self._next = packet.sequence
            delta = 0
        if delta < 0:
            self.stats.late += 1
            return []
        if packet.sequence in self._held:
            self.stats.duplicates += 1
            return []
        self._held[packet.sequence] = packet
        events: list[RtpEvent] = []
        self._release(events)
        while len(self._held) >= self.window:
            # The gap before the oldest held packet will not be filled in time: skip it.
            oldest = min(self._held, key=lambda s: _seq_delta(s, self._next))
            self.stats.lost += _seq_delta(oldest, self._next)
            self._next = oldest
            self._release(events)
        return events

    def _release(self, events: list[RtpEvent]) -> None:
        while (packet := self._held.pop(self._next, None)) is not None:
            self._next = (self._next + 1) & 0xFFFF
            self._deliver(packet, events)

    def _deliver(self, packet: Packet, events: list[RtpEvent]) -> None:
        if packet.payload_type == PT_PCMU:
            events.append(Audio(packet.payload))
        elif packet.payload_type == self.telephone_event_type:
            event = TelephoneEvent.parse(packet.payload)
            # All packets of one key press share the RTP timestamp of its start (RFC 4733
            # §2.5.1.2), including the three retransmitted end packets: report it once.
            if packet.timestamp != self._event_timestamp and event.event < len(DTMF_EVENTS):
                self._event_timestamp = packet.timestamp
                events.append(Dtmf(DTMF_EVENTS[event.event]))
        else:
            self.stats.other_payload += 1
