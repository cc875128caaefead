"""Playout buffer and 20 ms deadline pacer (sans-I/O: no asyncio, the clock is injected).

Asterisk forwards whatever AudioSocket receives straight out as RTP without pacing
(REFERENCE §2), while the Realtime service sends assistant audio several times faster than
real time. So assistant audio waits here and leaves one 20 ms frame per 20 ms: 320 bytes of
slin16 (AudioSocket) or 160 bytes of µ-law (RTP, chan_websocket: no transcoding at all).

The buffer counts, per assistant item, the samples actually released towards Asterisk.
That is what the caller heard, and what ``conversation.item.truncate`` must report on
barge-in (ARCHITECTURE rule 6) — not wall time since the first delta.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from agi_bridge.audio import FRAME_MS, SAMPLE_RATE, SAMPLE_WIDTH

_SAMPLES_PER_MS = SAMPLE_RATE // 1000  # 8
ULAW_SILENCE_BYTE = 0xFF  # µ-law encodes 0 as 0xFF (0x7F is -0); zeros would be a loud buzz


@dataclass(frozen=True, slots=True)
class Released:
    """One 20 ms frame handed to Asterisk, and which items' audio it carried."""

    pcm: bytes
    items: tuple[str, ...] = ()

    @property
    def silent(self) -> bool:
        return not self.items


@dataclass(frozen=True, slots=True)
class Cleared:
    """What ``PlayoutBuffer.clear()`` discarded."""

    dropped_ms: float
    items: tuple[str, ...]  # items that had audio still queued


class PlayoutBuffer:
    """Bounded FIFO of assistant audio (8 kHz), released in 20 ms frames.

    ``sample_width`` is 2 for slin16 (the default) and 1 for µ-law, whose silence is 0xFF.
    ``max_ms`` bounds memory per call. Audio pushed beyond it is dropped (and counted),
    because blocking the Realtime reader would also block barge-in events.
    """

    def __init__(
        self, max_ms: int, *, sample_width: int = SAMPLE_WIDTH, remember_items: int = 256
    ) -> None:
        if max_ms < FRAME_MS:
            raise ValueError(f"playout buffer must hold at least one frame, got {max_ms} ms")
        if sample_width not in (1, 2):
            raise ValueError(f"sample width must be 1 (µ-law) or 2 (slin16), got {sample_width}")
        self.max_ms = max_ms
        self.sample_width = sample_width
        self._bytes_per_ms = _SAMPLES_PER_MS * sample_width
        self.frame_bytes = FRAME_MS * self._bytes_per_ms
        self.silence = (
            bytes(self.frame_bytes)
            if sample_width == 2
            else bytes([ULAW_SILENCE_BYTE]) * self.frame_bytes
        )
        self._max_bytes = max_ms * self._bytes_per_ms
        self._chunks: deque[tuple[str, bytes]] = deque()
        self._offset = 0  # bytes of _chunks[0] already released
        self._queued = 0  # bytes queued, excluding the released part of _chunks[0]
        # samples released per item; bounded, oldest forgotten (a call has few items alive)
        self._released: OrderedDict[str, int] = OrderedDict()
        self._remember = remember_items
        self.dropped_ms_total = 0.0

    @property
    def queued_ms(self) -> float:
        return self._queued / self._bytes_per_ms

    @property
    def audible(self) -> bool:
        """True while assistant audio is waiting to be played."""
        return self._queued > 0

    @property
    def current_item(self) -> str | None:
        """The item whose audio plays next (None when idle)."""
        return self._chunks[0][0] if self._chunks else None

    def push(self, item_id: str, pcm: bytes) -> float:
        """Queue assistant audio; returns the ms dropped because the buffer was full."""
        if len(pcm) % self.sample_width:
            raise ValueError(f"slin16 audio must have an even length, got {len(pcm)}")
        room = self._max_bytes - self._queued
        dropped = 0
        if len(pcm) > room:
            dropped = len(pcm) - room
            pcm = pcm[:room]
        if pcm:
            self._chunks.append((item_id, pcm))
            self._queued += len(pcm)
            self._remember_item(item_id)
        dropped_ms = dropped / self._bytes_per_ms
        self.dropped_ms_total += dropped_ms
        return dropped_ms

    def next_frame(self) -> Released:
        """The next 20 ms frame: queued audio (the tail padded with silence) or silence."""
        frame_bytes = self.frame_bytes
        if not self._queued:
            return Released(self.silence)
        out = bytearray()
        items: list[str] = []
        while len(out) < frame_bytes and self._chunks:
            item_id, chunk = self._chunks[0]
            take = min(frame_bytes - len(out), len(chunk) - self._offset)
            out += chunk[self._offset : self._offset + take]
            self._offset += take
            self._queued -= take
            self._released[item_id] = self._released.get(item_id, 0) + take // self.sample_width
            if not items or items[-1] != item_id:
                items.append(item_id)
            if self._offset == len(chunk):
                self._chunks.popleft()
                self._offset = 0
        if len(out) < frame_bytes:
            out += self.silence[: frame_bytes - len(out)]
        return Released(bytes(out), tuple(items))

    def released_ms(self, item_id: str) -> int:
        """Whole milliseconds of ``item_id`` released so far (floor: never more than heard)."""
        return self._released.get(item_id, 0) // _SAMPLES_PER_MS

    def clear(self) -> Cleared:
        """Drop everything queued (barge-in). Released counts are kept for truncation."""
        items = tuple(dict.fromkeys(item for item, _ in self._chunks))
        dropped_ms = self._queued / self._bytes_per_ms
        self._chunks.clear()
        self._offset = 0
        self._queued = 0
        return Cleared(dropped_ms, items)

    def _remember_item(self, item_id: str) -> None:
        if item_id in self._released:
            return
        self._released[item_id] = 0
        while len(self._released) > self._remember:
            self._released.popitem(last=False)


class Pacer:
    """Frame deadlines on a monotonic clock: frame n is due at ``t0 + n * interval``.

    A late wake-up releases every frame already due (up to ``max_burst``), so the stream
    does not drift. After a longer stall (the process was starved), sending the whole
    backlog at once would hit the phone as a burst its jitter buffer drops, so the
    schedule is re-anchored instead and the skipped frames are counted.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        interval: float = FRAME_MS / 1000,
        max_burst: int = 5,
    ) -> None:
        self._clock = clock
        self.interval = interval
        self.max_burst = max_burst
        self.t0 = clock()
        self._n = 0  # frames released so far
        self.late_frames = 0  # frames released after their deadline + one interval
        self.skipped_frames = 0  # frames never sent because of a re-anchor

    @property
    def frames_sent(self) -> int:
        return self._n

    @property
    def next_deadline(self) -> float:
        return self.t0 + self._n * self.interval

    def due(self) -> int:
        """How many frames to release now; the caller must release exactly that many."""
        now = self._clock()
        # the epsilon keeps a wake-up exactly on a deadline from rounding to the frame before
        behind = int((now - self.t0) / self.interval + 1e-6) - self._n + 1
        if behind <= 0:
            return 0
        if behind > self.max_burst:
            # re-anchor: keep the grid (t0 + k*interval) but jump over what we cannot send
            self.skipped_frames += behind - 1
            self._n += behind - 1
            behind = 1
        if behind > 1:
            self.late_frames += behind - 1
        self._n += behind
        return behind
