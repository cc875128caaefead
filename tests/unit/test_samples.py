from __future__ import annotations

import statistics

import pytest

from agi_bridge.samples import Samples


def test_keeps_the_last_values_in_order() -> None:
    ring = Samples(3)
    assert list(ring) == [] and len(ring) == 0
    for v in (1.0, 2.0):
        ring.append(v)
    assert list(ring) == [1.0, 2.0] and len(ring) == 2
    for v in (3.0, 4.0, 5.0):
        ring.append(v)
    assert list(ring) == [3.0, 4.0, 5.0] and len(ring) == 3
    ring.append(6.0)
    assert list(ring) == [4.0, 5.0, 6.0]
    assert statistics.median(ring) == 5.0


def test_wraps_exactly_at_the_boundary() -> None:
    ring = Samples(4)
    for v in range(8):
        ring.append(float(v))
    assert list(ring) == [4.0, 5.0, 6.0, 7.0]


def test_needs_room() -> None:
    with pytest.raises(ValueError, match="room for one value"):
        Samples(0)
