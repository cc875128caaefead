"""A deterministic speech-like voice: no TTS binary, but energy detectors hear speech.

Each word is a voiced sound: a glottal-like fundamental of 120-200 Hz with harmonics up to
~3.4 kHz (the phone band), shaped by two "formants" that move per syllable, a syllable-rate
amplitude envelope (about 4-5 syllables per second, like real speech) and a short noise
burst where a consonant would be. Words are separated by pauses, longer after punctuation.
A tone would not do: the service's VAD, and a listener, ignore steady sines.

Everything is a pure function of the text, so a test can predict the total duration with
``plan_ms`` and the stream is identical on every run.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agi_bridge.simulator.codec import Samples

PAUSE_MS = 70  # between words
COMMA_PAUSE_MS = 220  # after , ; :
STOP_PAUSE_MS = 380  # after . ! ?
PEAK = 0.45 * 32767  # about -7 dBFS peaks, ~-17 dBFS RMS while voiced
_VOWELS = ((700, 1200), (500, 1900), (300, 2300), (600, 1000), (400, 1700), (350, 900))


@dataclass(frozen=True, slots=True)
class Segment:
    """One word (voiced, ``ms`` long) followed by ``pause_ms`` of silence."""

    word: str
    transcript: str  # the transcript text released when this word starts playing
    ms: int
    pause_ms: int


def plan(text: str, ms_per_char: int) -> list[Segment]:
    """Split ``text`` into timed words; ``ms_per_char`` counts letters and digits only."""
    words = text.split()
    out: list[Segment] = []
    for i, word in enumerate(words):
        letters = max(1, sum(ch.isalnum() for ch in word))
        last = i == len(words) - 1
        if last:
            pause = 0
        elif word[-1] in ".!?":
            pause = STOP_PAUSE_MS
        elif word[-1] in ",;:":
            pause = COMMA_PAUSE_MS
        else:
            pause = PAUSE_MS
        out.append(Segment(word, word if last else word + " ", letters * ms_per_char, pause))
    return out


def plan_ms(text: str, ms_per_char: int) -> int:
    """Total audio ms the simulator produces for ``text``."""
    return sum(s.ms + s.pause_ms for s in plan(text, ms_per_char))


def transcript_of(text: str) -> str:
    """The transcript the simulator reports for ``text`` (whitespace normalised)."""
    return " ".join(text.split())


def render_word(word: str, ms: int, rate: int, index: int = 0) -> Samples:
    """``ms`` of voiced sound for ``word`` at ``rate`` Hz, int16."""
    n = ms * rate // 1000
    if n <= 0:
        return np.zeros(0, dtype=np.int16)
    seed = zlib.crc32(f"{index}:{word}".encode())
    rng = np.random.default_rng(seed)
    letters = max(1, sum(ch.isalnum() for ch in word))
    n_syl = max(1, round(letters / 2.5))
    pos = np.arange(n, dtype=np.float64)
    syl_len = n / n_syl
    syl = np.minimum((pos // syl_len).astype(np.intp), n_syl - 1)
    x = pos / syl_len - syl  # 0..1 within each syllable

    # Pitch: a per-word base, a per-syllable accent and a gentle fall over the word.
    base = 120.0 + seed % 80
    accents = rng.uniform(-15.0, 20.0, n_syl)
    f0 = base + accents[syl] - 15.0 * pos / n
    phase = 2 * np.pi * np.cumsum(f0) / rate

    vowels = rng.integers(0, len(_VOWELS), n_syl)
    f1 = np.array([_VOWELS[v][0] for v in vowels], dtype=np.float64)[syl]
    f2 = np.array([_VOWELS[v][1] for v in vowels], dtype=np.float64)[syl]
    voiced = np.zeros(n, dtype=np.float64)
    for k in range(1, 40):
        fk = k * f0
        if fk.min() > min(3400.0, rate / 2 - 200):
            break
        gain = k**-0.5 * (
            0.25 + np.exp(-(((fk - f1) / 150.0) ** 2)) + 0.7 * np.exp(-(((fk - f2) / 250.0) ** 2))
        )
        gain[fk > rate / 2 - 200] = 0.0  # nothing above Nyquist: no aliasing
        voiced += gain * np.sin(k * phase)

    envelope = np.sin(np.pi * x) ** 0.6
    signal = voiced * envelope
    # A consonant-like noise burst at the start of each syllable (25 ms).
    burst = (x * syl_len < 0.025 * rate).astype(np.float64)
    signal += burst * rng.normal(0.0, 0.15, n) * float(np.abs(voiced).max())
    peak = float(np.abs(signal).max()) or 1.0
    out: npt.NDArray[np.float64] = signal * (PEAK / peak)
    return out.astype(np.int16)


def stream(text: str, ms_per_char: int, rate: int, chunk_ms: int) -> Iterator[tuple[Samples, str]]:
    """Yield ``(chunk, transcript_delta)``: ``chunk_ms`` of audio (the last may be shorter)
    and the transcript of the words that start inside it.

    Words are rendered one at a time, so memory stays at one word plus one chunk.
    """
    chunk_n = chunk_ms * rate // 1000
    pending: list[Samples] = []
    pending_n = 0
    text_out = ""
    for i, seg in enumerate(plan(text, ms_per_char)):
        word = render_word(seg.word, seg.ms, rate, i)
        pause = np.zeros(seg.pause_ms * rate // 1000, dtype=np.int16)
        text_out += seg.transcript
        for part in (word, pause):
            pending.append(part)
            pending_n += len(part)
            while pending_n >= chunk_n:
                joined = np.concatenate(pending)
                yield joined[:chunk_n], text_out
                text_out = ""
                rest = joined[chunk_n:]
                pending, pending_n = [rest], len(rest)
    if pending_n:
        yield np.concatenate(pending), text_out
