"""Counters of one call (sizes and times, never audio) and the optional audio tap."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from agi_bridge.samples import Samples


@dataclass
class CallStats:
    """Counters of one call. Written by the call, read by observers."""

    frames_in: int = 0
    frames_out: int = 0
    audio_frames_out: int = 0
    late_frames: int = 0
    skipped_frames: int = 0
    underruns: int = 0
    dropped_ms: float = 0.0
    caller_gap_fill_ms: float = 0.0  # silence appended while Asterisk sent no audio
    appends_sent: int = 0
    truncates_sent: int = 0
    barge_ins: int = 0
    tool_calls: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    # bounded samples for latency figures (ms)
    turn_latency_ms: Samples = field(default_factory=lambda: Samples(256))
    delta_to_frame_ms: Samples = field(default_factory=lambda: Samples(256))
    frame_to_send_ms: Samples = field(default_factory=lambda: Samples(256))
    # monotonic write time of the last frames to Asterisk (5 s), for pacing figures; the
    # benchmark resizes it to its window (a 30 s ring was 12 KB of every call's memory)
    frame_times: Samples = field(default_factory=lambda: Samples(250))

    def add_usage(self, usage: object) -> None:
        """Add a provider's usage report (token counts, nested detail groups flattened)."""
        if not isinstance(usage, dict):
            return

        def add(key: str, value: object) -> None:
            if isinstance(value, int) and not isinstance(value, bool):
                self.usage[key] = self.usage.get(key, 0) + value

        for key in ("input_tokens", "output_tokens", "total_tokens"):
            add(key, usage.get(key))
        for group in ("input_token_details", "output_token_details"):
            details = usage.get(group)
            if isinstance(details, dict):
                prefix = group.split("_")[0]
                for key, value in details.items():
                    add(f"{prefix}_{key}", value)


class AudioRecorder(Protocol):
    """Optional audio tap of a call (set by an observer, see records.WavRecorder).

    Called on the 20 ms path: once per caller frame received (8 kHz slin16) and once per
    frame released to Asterisk (with the pacer's running count of skipped frames). It
    must be cheap and must not raise.
    """

    def caller_audio(self, pcm: bytes) -> None: ...

    def agent_frame(self, pcm: bytes, skipped: int) -> None: ...
