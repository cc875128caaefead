"""The three GA audio formats, to and from 16-bit linear samples at the format's own rate.

The simulator never resamples: the VAD works at any rate (it measures 20 ms frames) and
the synthesizer renders directly at 8 kHz (G.711) or 24 kHz (pcm). A-law is not in
``agi_bridge.audio`` (the bridge only speaks µ-law), so it comes from ``audioop`` here,
imported the same quiet way.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

from agi_bridge.audio import slin_to_ulaw, ulaw_to_slin

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

Samples = npt.NDArray[np.int16]


class AudioFormat:
    """A negotiated format: its name, sample rate and bytes per sample."""

    __slots__ = ("bytes_per_sample", "name", "rate")

    def __init__(self, name: str):
        self.name = name
        self.rate = 24000 if name == "audio/pcm" else 8000
        self.bytes_per_sample = 2 if name == "audio/pcm" else 1

    @classmethod
    def from_session(cls, fmt: dict[str, Any]) -> AudioFormat:
        return cls(str(fmt.get("type", "audio/pcm")))

    def ms(self, nbytes: int) -> float:
        """Duration of ``nbytes`` of this format."""
        return nbytes / self.bytes_per_sample / self.rate * 1000

    def decode(self, data: bytes) -> Samples:
        """Encoded bytes -> int16 samples (a trailing odd byte of pcm is the caller's bug)."""
        if self.name == "audio/pcmu":
            pcm = ulaw_to_slin(data)
        elif self.name == "audio/pcma":
            pcm = _native_to_le(audioop.alaw2lin(data, 2))
        else:
            pcm = data[: len(data) - len(data) % 2]
        return np.frombuffer(pcm, dtype="<i2").astype(np.int16)

    def encode(self, samples: Samples) -> bytes:
        pcm = samples.astype("<i2").tobytes()
        if self.name == "audio/pcmu":
            return slin_to_ulaw(pcm)
        if self.name == "audio/pcma":
            return audioop.lin2alaw(_le_to_native(pcm), 2)
        return pcm


def _native_to_le(pcm: bytes) -> bytes:
    # audioop works in native byte order; the wire format is little-endian.
    return audioop.byteswap(pcm, 2) if sys.byteorder == "big" else pcm  # pragma: no cover


def _le_to_native(pcm: bytes) -> bytes:
    return audioop.byteswap(pcm, 2) if sys.byteorder == "big" else pcm  # pragma: no cover
