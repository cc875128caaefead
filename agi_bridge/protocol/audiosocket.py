"""AudioSocket framing, sans-I/O (REFERENCE §2; Asterisk res/res_audiosocket.c).

A frame is ``type (1 byte) | payload length (uint16 big-endian) | payload``. The parser
takes bytes as they arrive and returns complete frames as typed events; serializers return
bytes. No sockets, no asyncio: the TCP adapter lives in ``agi_bridge.asterisk.audiosocket``.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from enum import IntEnum

from agi_bridge.errors import AudioSocketError
from agi_bridge.protocol import dtmf

HEADER = struct.Struct(">BH")
HEADER_SIZE = HEADER.size  # 3

# Asterisk sends 320-byte slin frames; the largest legitimate payload is 20 ms at 192 kHz
# (7680 bytes). Anything beyond this bound is a broken or hostile peer, not audio.
MAX_PAYLOAD = 8192


class Kind(IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    SLIN = 0x10  # 8 kHz signed linear 16-bit little-endian
    ERROR = 0xFF


# 0x11-0x18: slin at higher rates (Asterisk 22.7+). Parsed, so a peer using them gets a
# precise error from the call rather than "unknown frame type".
SLIN_HIGHER_RATES = {
    0x11: 12000,
    0x12: 16000,
    0x13: 24000,
    0x14: 32000,
    0x15: 44100,
    0x16: 48000,
    0x17: 96000,
    0x18: 192000,
}


@dataclass(frozen=True, slots=True)
class Hangup:
    """The peer ended the session (type 0x00)."""


@dataclass(frozen=True, slots=True)
class Uuid:
    """The call's UUID (type 0x01), always Asterisk's first frame."""

    value: uuid.UUID


@dataclass(frozen=True, slots=True)
class Dtmf:
    """A DTMF digit the caller pressed (type 0x03, Asterisk 22.4+)."""

    digit: str


@dataclass(frozen=True, slots=True)
class Audio:
    """Signed linear 16-bit little-endian audio at ``rate`` Hz."""

    pcm: bytes
    rate: int = 8000


@dataclass(frozen=True, slots=True)
class Error:
    """An error frame (type 0xff); Asterisk never sends it, but the format allows a code."""

    payload: bytes


Event = Hangup | Uuid | Dtmf | Audio | Error


class AudioSocketParser:
    """Incremental AudioSocket frame parser.

    ``feed()`` never keeps more than one header plus ``max_payload`` bytes of an incomplete
    frame, so a peer cannot make it buffer without bound. After an error the stream is
    poisoned: every later ``feed()`` raises again, because framing is lost.
    """

    def __init__(self, *, max_payload: int = MAX_PAYLOAD) -> None:
        self._buf = bytearray()
        self._max_payload = max_payload
        self._failed: AudioSocketError | None = None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back (for tests and diagnostics)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Event]:
        if self._failed is not None:
            raise self._failed
        self._buf += data
        events: list[Event] = []
        while len(self._buf) >= HEADER_SIZE:
            kind, length = HEADER.unpack_from(self._buf)
            if length > self._max_payload:
                self._fail(
                    f"AudioSocket frame too large: type 0x{kind:02x} length {length}"
                    f" > {self._max_payload}"
                )
            if len(self._buf) < HEADER_SIZE + length:
                break
            payload = bytes(self._buf[HEADER_SIZE : HEADER_SIZE + length])
            del self._buf[: HEADER_SIZE + length]
            events.append(self._decode(kind, payload))
        return events

    def _fail(self, message: str) -> None:
        self._failed = AudioSocketError(message)
        self._buf.clear()
        raise self._failed

    def _decode(self, kind: int, payload: bytes) -> Event:
        if kind == Kind.SLIN:
            if len(payload) % 2:
                self._fail(f"AudioSocket audio frame has odd length {len(payload)}")
            return Audio(payload)
        if kind in SLIN_HIGHER_RATES:
            if len(payload) % 2:
                self._fail(f"AudioSocket audio frame has odd length {len(payload)}")
            return Audio(payload, SLIN_HIGHER_RATES[kind])
        if kind == Kind.UUID:
            if len(payload) != 16:
                self._fail(f"AudioSocket UUID frame must be 16 bytes, got {len(payload)}")
            return Uuid(uuid.UUID(bytes=payload))
        if kind == Kind.HANGUP:
            return Hangup()
        if kind == Kind.DTMF:
            digit = payload[:1].decode("ascii", "replace")
            if len(payload) != 1 or not dtmf.is_digit(digit):
                self._fail(f"AudioSocket DTMF frame must be one digit, got {payload!r}")
            return Dtmf(digit.upper())
        if kind == Kind.ERROR:
            return Error(payload)
        self._fail(f"AudioSocket frame of unknown type 0x{kind:02x} (length {len(payload)})")
        raise AssertionError("unreachable")  # pragma: no cover - _fail always raises


def frame(kind: int, payload: bytes = b"") -> bytes:
    """Serialize one frame."""
    if len(payload) > 0xFFFF:
        raise AudioSocketError(f"AudioSocket payload too large to frame: {len(payload)} bytes")
    return HEADER.pack(kind, len(payload)) + payload


def audio_frame(pcm: bytes) -> bytes:
    """An 8 kHz slin frame (type 0x10)."""
    return frame(Kind.SLIN, pcm)


def hangup_frame() -> bytes:
    """The hangup frame: makes Asterisk end AudioSocket() and continue the dialplan."""
    return frame(Kind.HANGUP)


def uuid_frame(value: uuid.UUID) -> bytes:
    """What Asterisk sends first (used by test clients)."""
    return frame(Kind.UUID, value.bytes)


def dtmf_frame(digit: str) -> bytes:
    """A DTMF frame as Asterisk sends it (used by test clients)."""
    return frame(Kind.DTMF, digit.encode("ascii"))
