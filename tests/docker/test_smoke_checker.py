"""The checks of docker/softphone/smoke.py on made-up calls (no phone, no network).

A whole smoke call through the real Asterisk runs in test_stack_without_docker.py.
"""

from __future__ import annotations

import array
import importlib.util
import math
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from agi_bridge.config import Config
from agi_bridge.metrics import FRAME_COUNTERS, Metrics
from tests.docker.helpers import DOCKER


def _load_smoke() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        "agi_bridge_smoke", DOCKER / "softphone" / "smoke.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


smoke = _load_smoke()
TIMELINE = smoke.Timeline(listen_first=5.0, speech=2.0, listen_after=7.0)
GOOD_LOG = """\
call: connecting to 'sip:100@127.0.0.1:5060'...
sip:6002@127.0.0.1: Call established: sip:100@127.0.0.1:5060
aufile: audio error: Unknown error (end of file)
sip:6002@127.0.0.1: Call with sip:100@127.0.0.1:5060 terminated (duration: 14 sec)
"""
FALLBACK_LOG = """\
sip:6002@127.0.0.1: Call established: sip:100@127.0.0.1:5060
6002: session closed: Connection reset by peer
sip:6002@127.0.0.1: Call with sip:100@127.0.0.1:5060 terminated (duration: 6 sec)
"""


def recording(path: Path, loud: list[tuple[float, float]], seconds: float = 14.0) -> Path:
    """8 kHz mono: a 300 Hz tone at about -15 dBFS in the ``loud`` intervals, else silence."""
    samples = array.array("h", bytes(2 * int(seconds * 8000)))
    for t1, t2 in loud:
        for n in range(int(t1 * 8000), int(t2 * 8000)):
            samples[n] = int(8000 * math.sin(2 * math.pi * 300 * n / 8000))
    smoke.write_pcm16(path, samples)
    return path


def metrics_text(outcomes: list[str], turns: int) -> dict[str, float]:
    """The bridge's own /metrics rendering (agi_bridge.metrics) after these calls."""
    metrics = Metrics(Config())
    call: Any = types.SimpleNamespace(
        stats=types.SimpleNamespace(**dict.fromkeys(FRAME_COUNTERS, 0))
    )
    for outcome in outcomes:
        metrics(call, "start", {})
        metrics(call, "end", {"reason": outcome})
    for _ in range(turns):
        metrics(call, "turn_latency", {"ms": 700.0})
    return dict(smoke.parse_metrics(metrics.render().decode()))


def by_name(checks: list[Any]) -> dict[str, bool]:
    return {c.name: c.ok for c in checks}


def test_a_good_call_passes(tmp_path: Path) -> None:
    rec = recording(tmp_path / "dec.wav", [(0.8, 4.9), (7.8, 10.0)])
    checks = smoke.analyze(
        GOOD_LOG, rec, TIMELINE, metrics_text([], 0), metrics_text(["caller_hangup"], 1)
    )
    assert by_name(checks) == {
        "call established": True,
        "caller stayed on the line": True,
        "greeting heard": True,
        "answer heard": True,
        "bridge counted the call": True,
        "bridge saw a turn": True,
    }, [c.line() for c in checks]


def test_silence_fails(tmp_path: Path) -> None:
    rec = recording(tmp_path / "dec.wav", [])
    checks = by_name(smoke.analyze(GOOD_LOG, rec, TIMELINE))
    assert checks["greeting heard"] is False and checks["answer heard"] is False
    assert "bridge counted the call" not in checks  # no --bridge-metrics: not checked


def test_no_answer_after_the_caller_spoke_fails(tmp_path: Path) -> None:
    rec = recording(tmp_path / "dec.wav", [(0.8, 4.9)])
    checks = by_name(smoke.analyze(GOOD_LOG, rec, TIMELINE))
    assert checks["greeting heard"] is True and checks["answer heard"] is False


def test_the_dialplan_fallback_fails(tmp_path: Path) -> None:
    """Asterisk apologises (speech!) and hangs up when the bridge is down."""
    rec = recording(tmp_path / "dec.wav", [(0.5, 3.5), (4.0, 6.0)], seconds=6.0)
    checks = by_name(smoke.analyze(FALLBACK_LOG, rec, TIMELINE))
    assert checks["call established"] is True
    assert checks["caller stayed on the line"] is False


def test_unanswered_call_fails() -> None:
    checks = by_name(smoke.analyze("call: connecting...\n", None, TIMELINE))
    assert checks["call established"] is False
    assert checks["agent speech heard"] is False


@pytest.mark.parametrize(
    ("outcomes", "turns", "counted", "turned"),
    [
        (["agent_hangup"], 2, True, True),
        (["realtime_failed"], 0, False, False),
        ([], 0, False, False),
        (["caller_hangup", "protocol_error"], 1, False, True),
    ],
)
def test_bridge_metrics(
    tmp_path: Path, outcomes: list[str], turns: int, counted: bool, turned: bool
) -> None:
    rec = recording(tmp_path / "dec.wav", [(0.8, 4.9), (7.8, 10.0)])
    before = metrics_text(["caller_hangup"], 3)  # earlier calls do not count
    after = metrics_text(["caller_hangup", *outcomes], 3 + turns)
    checks = by_name(smoke.analyze(GOOD_LOG, rec, TIMELINE, before, after))
    assert checks["bridge counted the call"] is counted
    assert checks["bridge saw a turn"] is turned


def test_metrics_of_several_workers_are_summed() -> None:
    """`serve --workers N`: the front labels each worker's samples; the checker adds them."""
    from agi_bridge.front import merge_metrics

    one = Metrics(Config())
    call: Any = types.SimpleNamespace(
        stats=types.SimpleNamespace(**dict.fromkeys(FRAME_COUNTERS, 0))
    )
    one(call, "start", {})
    one(call, "end", {"reason": "agent_hangup"})
    one(call, "turn_latency", {"ms": 700.0})
    text = one.render().decode()
    merged = smoke.parse_metrics(merge_metrics({0: text, 1: text}))
    alone = smoke.parse_metrics(text)
    assert smoke.calls_by_outcome(merged) == {
        k: 2 * v for k, v in smoke.calls_by_outcome(alone).items()
    }
    assert smoke.turns(merged) == 2 * smoke.turns(alone) == 2


def test_microphone_timeline() -> None:
    assert TIMELINE.speech_end == 7.0 and TIMELINE.total == 14.0


def test_levels() -> None:
    full = array.array("h", [32767, -32767] * 80)  # a full-scale square wave: 0 dBFS
    assert smoke.window_levels(full, 8000)[0] == pytest.approx(0.0, abs=0.01)
    levels = smoke.window_levels(array.array("h", bytes(2 * 8000)), 8000)
    assert len(levels) == 50 and max(levels) < -100
    assert smoke.active_seconds([-20.0] * 50 + [-90.0] * 50, 0.0, 2.0) == pytest.approx(1.0)
