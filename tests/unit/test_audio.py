"""G.711 µ-law codec, silence helpers, levels and resampling (stateless, per stream)."""

from __future__ import annotations

import array
import math
import sys

import pytest

from agi_bridge import audio

# G.711 µ-law: the decoded value lies within half a quantisation step of the input. The
# step doubles per segment (relative error <= 1/32 of the magnitude) plus a small constant
# from the 14-bit input and the finest segment; magnitudes above 32124 clip to 32124.
ULAW_MAX = 32124


def slin(samples: list[int] | range) -> bytes:
    data = array.array("h", samples)
    if sys.byteorder == "big":  # pragma: no cover
        data.byteswap()
    return data.tobytes()


def samples_of(pcm: bytes) -> list[int]:
    data = array.array("h")
    data.frombytes(pcm)
    if sys.byteorder == "big":  # pragma: no cover
        data.byteswap()
    return data.tolist()


def tone(freq: float, ms: int, rate: int = 8000, amplitude: float = 10_000) -> bytes:
    n = rate * ms // 1000
    return slin([round(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)])


def test_constants() -> None:
    assert audio.FRAME_SAMPLES == 160
    assert audio.SLIN_FRAME_BYTES == 320
    assert audio.ULAW_FRAME_BYTES == 160
    assert bytes(320) == audio.SLIN_SILENCE_FRAME


def test_ulaw_round_trip_within_g711_bounds_for_every_sample() -> None:
    xs = list(range(-32768, 32768))
    ulaw = audio.slin_to_ulaw(slin(xs))
    assert len(ulaw) == len(xs)
    back = samples_of(audio.ulaw_to_slin(ulaw))
    for x, y in zip(xs, back, strict=True):
        if abs(x) <= ULAW_MAX:
            assert abs(x - y) <= abs(x) / 32 + 8, (x, y)
            assert (x >= 0) == (y >= 0) or y == 0, (x, y)
        else:
            assert y == math.copysign(ULAW_MAX, x), (x, y)


def test_ulaw_is_little_endian_slin() -> None:
    # 1000 as little-endian bytes; read as big-endian it would be -6141, a different code
    assert audio.slin_to_ulaw(b"\xe8\x03") == audio.slin_to_ulaw(slin([1000]))
    assert audio.slin_to_ulaw(b"\xe8\x03") != audio.slin_to_ulaw(slin([-6141]))
    pcm = audio.ulaw_to_slin(audio.slin_to_ulaw(b"\xe8\x03"))
    assert abs(int.from_bytes(pcm, "little", signed=True) - 1000) <= 1000 / 32 + 8


def test_every_ulaw_code_survives_decode_encode() -> None:
    codes = bytes(range(256))
    again = audio.slin_to_ulaw(audio.ulaw_to_slin(codes))
    # 0x7f is "negative zero": it decodes to 0, which encodes as 0xff
    diffs = [(c, r) for c, r in zip(codes, again, strict=True) if c != r]
    assert diffs == [(0x7F, 0xFF)]


def test_known_codes() -> None:
    assert audio.slin_to_ulaw(slin([0])) == b"\xff"
    assert audio.slin_to_ulaw(slin([32767])) == b"\x80"
    assert audio.slin_to_ulaw(slin([-32768])) == b"\x00"
    assert samples_of(audio.ulaw_to_slin(b"\xff\x80\x00")) == [0, 32124, -32124]


def test_tone_round_trip_keeps_its_level() -> None:
    pcm = tone(1000, 100)
    back = audio.ulaw_to_slin(audio.slin_to_ulaw(pcm))
    assert len(back) == len(pcm)
    assert audio.rms_dbfs(back) == pytest.approx(audio.rms_dbfs(pcm), abs=0.2)


def test_slin_to_ulaw_rejects_odd_length() -> None:
    with pytest.raises(ValueError, match="even length, got 3"):
        audio.slin_to_ulaw(b"\x00\x01\x02")


def test_silence_helpers() -> None:
    assert audio.ulaw_silence(20) == b"\xff" * 160
    assert audio.ulaw_silence(0) == b""
    assert audio.ulaw_silence(1000) == b"\xff" * 8000
    assert audio.ulaw_to_slin(audio.ulaw_silence(20)) == audio.SLIN_SILENCE_FRAME
    assert audio.slin_to_ulaw(audio.SLIN_SILENCE_FRAME) == audio.ulaw_silence(20)


def test_durations() -> None:
    assert audio.slin_ms(320) == 20
    assert audio.slin_ms(16) == 1
    assert audio.slin_ms(8) == 0.5
    assert audio.ulaw_ms(160) == 20
    assert audio.ulaw_ms(8000) == 1000


def test_rms_dbfs() -> None:
    assert audio.rms_dbfs(b"") == -math.inf
    assert audio.rms_dbfs(bytes(320)) == -math.inf
    # square waves: RMS = amplitude
    assert audio.rms_dbfs(slin([32767, -32767] * 80)) == pytest.approx(0, abs=0.001)
    assert audio.rms_dbfs(slin([16384, -16384] * 80)) == pytest.approx(-6.0206, abs=0.001)
    assert audio.rms_dbfs(slin([328, -328] * 80)) == pytest.approx(-40, abs=0.02)
    # a sine's RMS is 3 dB under its peak
    assert audio.rms_dbfs(tone(400, 100, amplitude=32767)) == pytest.approx(-3.01, abs=0.05)


def test_resample_8k_is_a_no_op() -> None:
    pcm = tone(440, 20)
    out, state = audio.resample_to_8k(pcm, 8000, None)
    assert out is pcm
    assert state is None


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_resample_to_8k_length(rate: int) -> None:
    state: audio.ResampleState = None
    total_in = total_out = 0
    for _ in range(10):
        chunk = tone(440, 20, rate=rate)
        out, state = audio.resample_to_8k(chunk, rate, state)
        assert len(out) % 2 == 0
        total_in += len(chunk)
        total_out += len(out)
    ratio = rate // 8000
    assert abs(total_out - total_in // ratio) <= 2 * 2  # at most a sample or two of filter lag


def test_resample_16k_halves_each_20ms_frame() -> None:
    state: audio.ResampleState = None
    for _ in range(5):
        out, state = audio.resample_to_8k(tone(440, 20, rate=16000), 16000, state)
        assert len(out) == 320  # 640 bytes at 16 kHz -> one 8 kHz frame


def test_resample_keeps_the_tone() -> None:
    state: audio.ResampleState = None
    out = b""
    for _ in range(10):
        chunk, state = audio.resample_to_8k(tone(440, 20, rate=16000), 16000, state)
        out += chunk
    # level survives (the 440 Hz tone is far below the 4 kHz Nyquist limit)
    assert audio.rms_dbfs(out[320:]) == pytest.approx(audio.rms_dbfs(tone(440, 180)), abs=0.5)


def test_resample_state_is_per_stream() -> None:
    # the same input with a fresh state gives the same output: nothing hidden is shared
    a1, sa = audio.resample_to_8k(tone(300, 20, rate=16000), 16000, None)
    a2, _ = audio.resample_to_8k(tone(700, 20, rate=16000), 16000, sa)
    b1, _ = audio.resample_to_8k(tone(300, 20, rate=16000), 16000, None)
    assert a1 == b1
    assert a2 != a1
