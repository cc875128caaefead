"""G.711 µ-law <-> 16-bit signed linear (little-endian) at 8 kHz, silence and levels.

The codec comes from the stdlib ``audioop`` on 3.11/3.12 and from ``audioop-lts`` on 3.13+
(same module name). Its import-time DeprecationWarning on 3.11/3.12 is expected and is
silenced here so that ``-W error`` runs stay green. The codec is stateless, so nothing is
shared between calls.
"""

from __future__ import annotations

import math
import sys
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

SAMPLE_RATE = 8000
SAMPLE_WIDTH = 2  # bytes per slin16 sample
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 160
SLIN_FRAME_BYTES = FRAME_SAMPLES * SAMPLE_WIDTH  # 320
ULAW_FRAME_BYTES = FRAME_SAMPLES  # 160
SLIN_SILENCE_FRAME = bytes(SLIN_FRAME_BYTES)
ULAW_SILENCE_BYTE = b"\xff"  # µ-law code for 0

_BIG_ENDIAN = sys.byteorder == "big"


def slin_to_ulaw(pcm: bytes) -> bytes:
    """slin16 little-endian -> µ-law, one byte per sample."""
    if len(pcm) % SAMPLE_WIDTH:
        raise ValueError(f"slin16 audio must have an even length, got {len(pcm)} bytes")
    if _BIG_ENDIAN:  # pragma: no cover - audioop works in native byte order
        pcm = audioop.byteswap(pcm, SAMPLE_WIDTH)
    return audioop.lin2ulaw(pcm, SAMPLE_WIDTH)


def ulaw_to_slin(ulaw: bytes) -> bytes:
    """µ-law -> slin16 little-endian, two bytes per sample."""
    pcm = audioop.ulaw2lin(ulaw, SAMPLE_WIDTH)
    if _BIG_ENDIAN:  # pragma: no cover
        pcm = audioop.byteswap(pcm, SAMPLE_WIDTH)
    return pcm


def ulaw_silence(ms: int) -> bytes:
    """µ-law silence of ``ms`` milliseconds at 8 kHz."""
    return ULAW_SILENCE_BYTE * (SAMPLE_RATE * ms // 1000)


def slin_ms(nbytes: int) -> float:
    """Duration in ms of ``nbytes`` of slin16 at 8 kHz."""
    return nbytes / (SAMPLE_WIDTH * SAMPLE_RATE / 1000)


def ulaw_ms(nbytes: int) -> float:
    """Duration in ms of ``nbytes`` of µ-law at 8 kHz."""
    return nbytes / (SAMPLE_RATE / 1000)


def rms_dbfs(pcm: bytes) -> float:
    """RMS level of slin16 audio in dBFS (-inf for digital silence)."""
    if not pcm:
        return -math.inf
    rms = audioop.rms(pcm, SAMPLE_WIDTH)
    if rms == 0:
        return -math.inf
    return 20 * math.log10(rms / 32768)


ResampleState = tuple[int, tuple[tuple[int, int], ...]] | None


def resample_to_8k(pcm: bytes, rate: int, state: ResampleState) -> tuple[bytes, ResampleState]:
    """slin16 at ``rate`` -> 8 kHz. The filter state is per stream (never shared)."""
    if rate == SAMPLE_RATE:
        return pcm, state
    if _BIG_ENDIAN:  # pragma: no cover
        pcm = audioop.byteswap(pcm, SAMPLE_WIDTH)
    out, new_state = audioop.ratecv(pcm, SAMPLE_WIDTH, 1, rate, SAMPLE_RATE, state)
    if _BIG_ENDIAN:  # pragma: no cover
        out = audioop.byteswap(out, SAMPLE_WIDTH)
    return out, new_state


def to_stereo(pcm: bytes, *, left: bool) -> bytes:
    """slin16 mono -> stereo with the audio on one side and silence on the other."""
    return audioop.tostereo(pcm, SAMPLE_WIDTH, 1 if left else 0, 0 if left else 1)


def mix(a: bytes, b: bytes) -> bytes:
    """Sample-wise sum of two slin16 buffers of equal length (saturating)."""
    return audioop.add(a, b, SAMPLE_WIDTH)
