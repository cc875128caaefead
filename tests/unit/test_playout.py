"""PlayoutBuffer accounting and the deadline Pacer, on an injected fake clock (no sleeps)."""

from __future__ import annotations

import pytest

from agi_bridge.playout import Cleared, Pacer, PlayoutBuffer, Released

FRAME = 320  # bytes of slin16 in 20 ms at 8 kHz
SILENCE = bytes(FRAME)


def pcm(ms: int, fill: int = 1) -> bytes:
    """``ms`` milliseconds of recognisable (non-silent) slin16 at 8 kHz."""
    return bytes([fill, 0]) * (8 * ms)


def samples(n: int, fill: int = 1) -> bytes:
    return bytes([fill, 0]) * n


# ----------------------------------------------------------------------- PlayoutBuffer


def test_empty_buffer_releases_silence() -> None:
    buf = PlayoutBuffer(1000)
    for _ in range(3):
        frame = buf.next_frame()
        assert frame == Released(SILENCE, ())
        assert frame.silent
    assert not buf.audible
    assert buf.current_item is None
    assert buf.queued_ms == 0


def test_rejects_limit_below_one_frame() -> None:
    with pytest.raises(ValueError, match="19 ms"):
        PlayoutBuffer(19)
    PlayoutBuffer(20)


def test_rejects_odd_length_push() -> None:
    buf = PlayoutBuffer(1000)
    with pytest.raises(ValueError, match="even length"):
        buf.push("a", b"\x00\x01\x02")
    assert buf.queued_ms == 0


def test_exact_frames_come_out_in_order() -> None:
    buf = PlayoutBuffer(1000)
    audio = pcm(20, 1) + pcm(20, 2) + pcm(20, 3)
    assert buf.push("item1", audio) == 0
    assert buf.queued_ms == 60
    assert buf.audible
    assert buf.current_item == "item1"
    out = [buf.next_frame() for _ in range(3)]
    assert [f.pcm for f in out] == [pcm(20, 1), pcm(20, 2), pcm(20, 3)]
    assert all(f.items == ("item1",) and not f.silent for f in out)
    assert buf.released_ms("item1") == 60
    assert not buf.audible
    assert buf.current_item is None
    assert buf.next_frame() == Released(SILENCE)


def test_every_frame_is_320_bytes_whatever_the_push_sizes() -> None:
    buf = PlayoutBuffer(10_000)
    sizes = [2, 6, 158, 320, 322, 1000, 14, 640, 2]
    total = 0
    for i, n in enumerate(sizes):
        buf.push(f"i{i % 3}", bytes([i + 1, 0]) * (n // 2))
        total += n
    got = bytearray()
    while buf.audible:
        frame = buf.next_frame()
        assert len(frame.pcm) == FRAME
        got += frame.pcm
    expected = b"".join(bytes([i + 1, 0]) * (n // 2) for i, n in enumerate(sizes))
    # all audio in order, then the tail padded with silence to a whole frame
    assert bytes(got[:total]) == expected
    assert got[total:] == bytes(len(got) - total)
    assert len(got) % FRAME == 0


def test_tail_is_padded_with_silence() -> None:
    buf = PlayoutBuffer(1000)
    buf.push("a", pcm(5))
    frame = buf.next_frame()
    assert frame.pcm == pcm(5) + bytes(FRAME - 80)
    assert frame.items == ("a",)
    assert buf.released_ms("a") == 5


def test_item_spanning_frames_and_frame_spanning_items() -> None:
    buf = PlayoutBuffer(1000)
    buf.push("a", pcm(30, 1))  # 1.5 frames
    buf.push("b", pcm(30, 2))  # 1.5 frames
    f1, f2, f3 = buf.next_frame(), buf.next_frame(), buf.next_frame()
    assert f1.items == ("a",)
    assert f2.items == ("a", "b")
    assert f2.pcm == pcm(10, 1) + pcm(10, 2)
    assert f3.items == ("b",)
    assert buf.released_ms("a") == 30
    assert buf.released_ms("b") == 30
    assert not buf.audible


def test_same_item_in_consecutive_chunks_is_listed_once_per_frame() -> None:
    buf = PlayoutBuffer(1000)
    buf.push("a", pcm(5))
    buf.push("a", pcm(5))
    buf.push("b", pcm(5))
    buf.push("a", pcm(5))
    frame = buf.next_frame()
    assert frame.items == ("a", "b", "a")
    assert buf.released_ms("a") == 15
    assert buf.released_ms("b") == 5


def test_released_ms_is_exact_and_floors_partial_ms() -> None:
    buf = PlayoutBuffer(1000)
    # 8 samples = 1 ms; 13 samples released = 1.625 ms -> 1
    buf.push("a", samples(13))
    buf.push("b", samples(300))
    buf.next_frame()
    assert buf.released_ms("a") == 1  # 13 samples
    assert buf.released_ms("b") == 18  # 147 samples = 18.375 ms
    buf.next_frame()
    # all 300 samples of "b" released = 37.5 ms -> 37 (never more than was heard)
    assert buf.released_ms("b") == 37
    assert not buf.audible
    buf.next_frame()  # silence does not count
    assert buf.released_ms("a") == 1
    assert buf.released_ms("b") == 37


def test_released_ms_counts_whole_ms_across_many_frames() -> None:
    buf = PlayoutBuffer(100_000)
    buf.push("long", pcm(1234))
    for n in range(1, 62):
        buf.next_frame()
        assert buf.released_ms("long") == 20 * n
    buf.next_frame()  # 1234 - 1220 = 14 ms left, then padding
    assert buf.released_ms("long") == 1234
    buf.next_frame()
    assert buf.released_ms("long") == 1234


def test_released_ms_unknown_item_is_zero() -> None:
    buf = PlayoutBuffer(1000)
    assert buf.released_ms("never") == 0
    buf.push("queued", pcm(40))
    assert buf.released_ms("queued") == 0


def test_clear_accounting() -> None:
    buf = PlayoutBuffer(10_000)
    buf.push("a", pcm(30))
    buf.push("b", pcm(100))
    buf.push("a", pcm(10))
    buf.next_frame()  # 20 ms of "a" played
    cleared = buf.clear()
    assert cleared == Cleared(dropped_ms=120, items=("a", "b"))
    assert buf.queued_ms == 0
    assert not buf.audible
    assert buf.current_item is None
    assert buf.next_frame() == Released(SILENCE)
    # released counts survive the clear: that is what the truncate reports
    assert buf.released_ms("a") == 20
    assert buf.released_ms("b") == 0


def test_clear_mid_frame_drops_the_unplayed_part_only() -> None:
    buf = PlayoutBuffer(10_000)
    buf.push("a", samples(250))  # 31.25 ms
    buf.next_frame()  # 160 samples
    cleared = buf.clear()
    assert cleared.dropped_ms == pytest.approx(90 / 8)
    assert cleared.items == ("a",)
    assert buf.released_ms("a") == 20
    # the buffer works normally afterwards
    buf.push("c", pcm(20, 9))
    assert buf.current_item == "c"
    assert buf.next_frame() == Released(pcm(20, 9), ("c",))
    assert buf.released_ms("c") == 20
    assert buf.released_ms("a") == 20


def test_clear_on_empty_buffer() -> None:
    buf = PlayoutBuffer(1000)
    assert buf.clear() == Cleared(0, ())


def test_overflow_drops_and_returns_dropped_ms() -> None:
    buf = PlayoutBuffer(100)
    assert buf.push("a", pcm(60)) == 0
    assert buf.push("a", pcm(70)) == 30
    assert buf.queued_ms == 100
    assert buf.dropped_ms_total == 30
    # full: everything is dropped, and counted
    assert buf.push("b", pcm(10)) == 10
    assert buf.dropped_ms_total == 40
    assert buf.current_item == "a"
    # the kept audio is the head of the push, not the tail
    frames = [buf.next_frame() for _ in range(5)]
    assert all(f.items == ("a",) for f in frames)
    assert not buf.audible
    assert buf.released_ms("a") == 100
    assert buf.released_ms("b") == 0
    # draining frees room again
    assert buf.push("c", pcm(100)) == 0


def test_overflow_keeps_the_first_part_of_the_push() -> None:
    buf = PlayoutBuffer(20)
    audio = pcm(10, 1) + pcm(10, 2) + pcm(10, 3)
    assert buf.push("a", audio) == 10
    assert buf.next_frame().pcm == pcm(10, 1) + pcm(10, 2)


def test_buffer_never_exceeds_its_limit() -> None:
    buf = PlayoutBuffer(200)
    dropped = 0.0
    for i in range(100):
        dropped += buf.push("a", pcm(10))
        assert buf.queued_ms <= 200
        if i % 3 == 0:
            buf.next_frame()
    assert dropped == buf.dropped_ms_total
    assert dropped > 0


def test_current_item_follows_playback() -> None:
    buf = PlayoutBuffer(1000)
    buf.push("a", pcm(20))
    buf.push("b", pcm(20))
    assert buf.current_item == "a"
    buf.next_frame()
    assert buf.current_item == "b"
    assert buf.audible
    buf.next_frame()
    assert buf.current_item is None
    assert not buf.audible


def test_remembered_items_are_bounded() -> None:
    buf = PlayoutBuffer(100_000, remember_items=3)
    for i in range(5):
        buf.push(f"i{i}", pcm(20))
        buf.next_frame()
    assert buf.released_ms("i0") == 0  # forgotten
    assert buf.released_ms("i1") == 0
    assert [buf.released_ms(f"i{i}") for i in (2, 3, 4)] == [20, 20, 20]


# ------------------------------------------------------------------------------ Pacer


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("t0", [0.0, 1234.5678, 86_400.123, 3.2e7])
def test_frame_n_due_exactly_at_t0_plus_20n(t0: float) -> None:
    clock = FakeClock(t0)
    pacer = Pacer(clock)
    assert pacer.t0 == t0
    for n in range(10_001):
        clock.now = t0 + n * 0.020
        assert pacer.due() == 1, f"frame {n}"
        assert pacer.due() == 0, f"frame {n} released twice"
    assert pacer.frames_sent == 10_001
    assert pacer.late_frames == 0
    assert pacer.skipped_frames == 0


def test_accumulating_float_clock_does_not_drift() -> None:
    # a clock built by repeated addition carries rounding error; the pacer must not
    # accumulate its own, and must not lose or add a frame over 10000 frames
    clock = FakeClock(1000.0)
    pacer = Pacer(clock)
    total = 0
    for _ in range(10_000):
        total += pacer.due()
        clock.now += 0.020
    assert total == 10_000
    assert pacer.late_frames == 0
    assert pacer.next_deadline == pytest.approx(1000.0 + 10_000 * 0.020, abs=1e-9)


def test_due_is_zero_before_the_deadline() -> None:
    clock = FakeClock(50.0)
    pacer = Pacer(clock)
    assert pacer.due() == 1  # frame 0 at t0
    assert pacer.next_deadline == pytest.approx(50.020)
    for dt in (0.0, 0.001, 0.010, 0.0199):
        clock.now = 50.0 + dt
        assert pacer.due() == 0
    clock.now = 50.020
    assert pacer.due() == 1
    clock.now = 50.039
    assert pacer.due() == 0
    assert pacer.frames_sent == 2


def test_late_wake_up_catches_up_and_stays_on_the_grid() -> None:
    t0 = 10.0
    clock = FakeClock(t0)
    pacer = Pacer(clock)
    for n in range(5):
        clock.now = t0 + n * 0.020
        assert pacer.due() == 1
    deadline = pacer.next_deadline
    assert deadline == pytest.approx(t0 + 5 * 0.020)
    clock.now = deadline + 0.050  # woke 50 ms late: frames at +0, +20, +40 ms are due
    assert pacer.due() == 3
    assert pacer.late_frames == 2
    assert pacer.skipped_frames == 0
    assert pacer.next_deadline == pytest.approx(t0 + 8 * 0.020)
    assert pacer.due() == 0
    clock.now = t0 + 8 * 0.020
    assert pacer.due() == 1
    assert pacer.frames_sent == 9


def test_burst_of_exactly_max_burst_is_sent_not_skipped() -> None:
    t0 = 0.0
    clock = FakeClock(t0)
    pacer = Pacer(clock, max_burst=5)
    assert pacer.due() == 1
    clock.now = t0 + 5 * 0.020  # frames 1..5 due
    assert pacer.due() == 5
    assert pacer.skipped_frames == 0
    assert pacer.late_frames == 4


def test_stall_beyond_max_burst_re_anchors_on_the_grid() -> None:
    t0 = 100.0
    clock = FakeClock(t0)
    pacer = Pacer(clock, max_burst=5)
    assert pacer.due() == 1  # frame 0
    clock.now = t0 + 1.013  # stalled ~1 s: frames 1..50 are due (50 at t0 + 1.000)
    assert pacer.due() == 1  # one frame, not a burst of 50
    assert pacer.skipped_frames == 49
    assert pacer.frames_sent == 51
    deadline = pacer.next_deadline
    assert deadline > clock.now
    k = (deadline - t0) / 0.020
    assert k == pytest.approx(round(k), abs=1e-6)  # still on t0 + k*20 ms
    assert deadline == pytest.approx(t0 + 51 * 0.020)
    # and the cadence continues from there
    assert pacer.due() == 0
    clock.now = deadline
    assert pacer.due() == 1


def test_stall_of_max_burst_plus_one_re_anchors() -> None:
    clock = FakeClock(0.0)
    pacer = Pacer(clock, max_burst=5)
    assert pacer.due() == 1
    clock.now = 6 * 0.020  # frames 1..6 due: one more than max_burst
    assert pacer.due() == 1
    assert pacer.skipped_frames == 5
    assert pacer.next_deadline == pytest.approx(7 * 0.020)


def test_custom_interval() -> None:
    clock = FakeClock(0.0)
    pacer = Pacer(clock, interval=0.010)
    assert pacer.due() == 1
    clock.now = 0.010
    assert pacer.due() == 1
    clock.now = 0.035
    assert pacer.due() == 2
