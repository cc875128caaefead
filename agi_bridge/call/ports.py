"""The only things a transport implements: a media port and a channel control.

A ``Call`` (call/call.py) is transport-free: it never sees a socket, a frame codec or an
Asterisk client. Each way into the bridge (AudioSocket + FastAGI + AMI, ARI + RTP,
ARI + chan_websocket) lives in ``agi_bridge/transports/`` and hands the Call three things:

- a :class:`CallIdentity` (who is calling, which agent), known before the Call starts;
- a :class:`MediaPort`: caller audio and key presses in, 20 ms agent frames out;
- a :class:`ChannelControl`: what the agent and the end of the call do to the channel.

Adding a fourth transport means writing these three, never touching conversation code.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class MediaFormat(enum.Enum):
    """What one 20 ms frame on the port carries (always 8 kHz mono)."""

    SLIN16 = "slin16"  # signed linear 16-bit little-endian: 320 bytes a frame (AudioSocket)
    ULAW = "ulaw"  # G.711 µ-law: 160 bytes a frame (RTP, chan_websocket); no transcoding

    @property
    def frame_bytes(self) -> int:
        return 320 if self is MediaFormat.SLIN16 else 160


@dataclass(frozen=True, slots=True)
class CallIdentity:
    """Who the call is. ``call_id`` is unique among live calls (AudioSocket UUID, ARI
    channel id); ``agent`` is the agent the dialplan or a route asked for (None: default)."""

    call_id: str
    transport: str
    channel: str = ""
    caller_id: str = ""
    dnid: str = ""
    agent: str | None = None
    caller_name: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------- media port events


@dataclass(frozen=True, slots=True)
class CallerAudio:
    """Caller audio in the port's format (any length; usually one 20 ms frame)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CallerDtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class MediaEnded:
    """The caller's side is gone (hung up, socket closed). ``detail`` is for the log."""

    detail: str


MediaEvent = CallerAudio | CallerDtmf | MediaEnded


class MediaPort(Protocol):
    """Caller audio in, agent audio out.

    ``receive`` blocks until something arrives and raises ``agi_bridge.errors.MediaError``
    (a subclass of BridgeError) on malformed input: that ends this call only.

    ``send_frame`` is called by the Call on 20 ms monotonic deadlines with exactly one
    frame of ``format.frame_bytes`` bytes. It must not block; it raises MediaError when the
    far end stopped reading (a bounded backlog). When ``needs_silence`` is False the far
    end fills gaps itself (chan_websocket) and the Call does not send silent frames.

    ``flush`` runs on barge-in after the Call cleared its own buffer: a port whose far end
    queues media (chan_websocket) drops that queue so the agent stops at the phone at once.
    ``queued_ms`` is how much of the audio already sent the far end still holds unplayed
    (0 where Asterisk forwards at once): on a barge-in that part was released but never
    heard, so the truncate leaves it out.

    Note: Asterisk 22.10's chan_websocket no longer generates silence, so every port that
    Asterisk plays from needs silence frames (``needs_silence``); it stays a port property
    for a transport whose far end fills gaps itself.
    """

    format: MediaFormat
    needs_silence: bool

    async def receive(self) -> list[MediaEvent]: ...

    def send_frame(self, frame: bytes) -> None: ...

    async def flush(self) -> None: ...

    def queued_ms(self) -> int: ...

    async def close(self) -> None: ...


class Outcome(enum.Enum):
    """How the call leaves the bridge, which decides what Asterisk does next."""

    COMPLETED = "completed"  # agent or operator finished: dialplan sees completed, hangs up
    FAILED = "failed"  # the bridge could not go on: dialplan runs its fallback
    CALLER_GONE = "caller_gone"  # the caller hung up: nothing left to tell Asterisk
    TRANSFERRED = "transferred"  # the channel already continues elsewhere in the dialplan


class ChannelControl(Protocol):
    """What the call does to its Asterisk channel. Methods raise
    ``agi_bridge.errors.ControlError`` (a BridgeError) with a message for the model when
    the action cannot be done (no AMI, channel unknown, Asterisk refused)."""

    async def send_dtmf(self, digit: str, duration_ms: int) -> None:
        """Play one digit to the far end as RFC 4733 (returns once queued)."""

    async def transfer(self, context: str, exten: str, priority: int) -> None:
        """Continue the channel in the dialplan at context,exten,priority. Afterwards the
        media port ends by itself (MediaEnded) when Asterisk takes the channel away."""

    async def release(self, outcome: Outcome) -> None:
        """The call is over: tell Asterisk (status variable ``AGI_BRIDGE_STATUS`` =
        completed before the channel leaves the bridge; hang up or continue the dialplan).
        Must not raise: failures are logged. Called exactly once, before MediaPort.close."""
