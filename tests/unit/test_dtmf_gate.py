"""DtmfGate: the caller's DTMF rate limit and burst coalescing, on a hand-moved clock."""

from __future__ import annotations

from agi_bridge.call.dtmf import DtmfGate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_person_typing_passes_and_is_sent_after_the_pause() -> None:
    clock = Clock()
    gate = DtmfGate(clock, rate=10, burst=20, pause_s=0.3)
    for digit in "1234#":
        assert gate.press(digit)
        clock.now += 0.15
    assert gate.due() is not None and 0 < gate.due() <= 0.3  # type: ignore[operator]
    clock.now += 0.3
    assert gate.due() == 0.0
    assert gate.take() == "1234#"
    assert gate.due() is None and gate.take() == ""


def test_a_flood_is_cut_to_the_rate() -> None:
    clock = Clock()
    gate = DtmfGate(clock, rate=10, burst=20, pause_s=0.3, max_batch=32)
    passed = sum(gate.press("5") for _ in range(20_000))
    assert passed == 20 and gate.dropped == 19_980
    clock.now += 1.0  # one second later: ten more
    assert sum(gate.press("5") for _ in range(1000)) == 10


def test_a_long_burst_is_sent_in_batches() -> None:
    clock = Clock()
    gate = DtmfGate(clock, rate=1000, burst=100, pause_s=0.3, max_batch=32)
    for _ in range(32):
        gate.press("7")
    assert gate.due() == 0.0 and gate.take() == "7" * 32
