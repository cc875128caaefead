"""Scenario loading (dict/YAML) and the synthetic voice."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from agi_bridge.audio import rms_dbfs
from agi_bridge.errors import ConfigError
from agi_bridge.simulator import Scenario, ToolCall, Turn, demo_scenario, plan_ms
from agi_bridge.simulator.synth import stream

EXAMPLE = """
greeting: "Hello, how can I help?"
speed: inf
response_latency_ms: 0
turns:
  - "A plain reply."
  - text: "Let me transfer you."
    caller_text: "Put me through to sales"
    tool_calls:
      - name: transfer
        arguments: {extension: "200"}
default_reply: "Anything else?"
send_unknown_events: true
"""


def test_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(EXAMPLE)
    scenario = Scenario.from_yaml(path)
    assert scenario.greeting == "Hello, how can I help?"
    assert scenario.speed == math.inf
    assert scenario.turns == [
        Turn("A plain reply."),
        Turn(
            "Let me transfer you.",
            (ToolCall("transfer", {"extension": "200"}),),
            "Put me through to sales",
        ),
    ]
    assert scenario.default_reply == "Anything else?"
    assert scenario.send_unknown_events is True


@pytest.mark.parametrize(
    "data, key",
    [
        ({"gretting": "typo"}, "gretting"),
        ({"speed": "fast"}, "speed"),
        ({"speed": 0}, "speed"),
        ({"close_after_ms": True}, "close_after_ms"),
        ({"refuse_connect": 200}, "refuse_connect"),
        ({"turns": [{"text": "x", "tool_calls": [{"arguments": {}}]}]}, "turns[0].tool_calls[0]"),
    ],
)
def test_bad_scenarios_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        Scenario.from_dict(data, file="s.yaml")
    assert info.value.key == key
    assert str(info.value).startswith("s.yaml")


def test_demo_scenario_says_it_is_a_simulator() -> None:
    demo = demo_scenario()
    assert demo.greeting is not None and "simulator" in demo.greeting
    assert demo.turns


def test_voice_is_speech_like_and_deterministic() -> None:
    text = "Hello there, this is a test. Goodbye."
    chunks = list(stream(text, 65, 8000, 100))
    audio = np.concatenate([c for c, _ in chunks])
    assert len(audio) == plan_ms(text, 65) * 8
    assert "".join(t for _, t in chunks) == text
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)
    levels = np.array([rms_dbfs(f.astype("<i2").tobytes()) for f in frames])
    loud = levels > -40
    assert 0.6 < loud.mean() < 0.95  # mostly voiced, with real pauses between words
    assert -25 < np.median(levels[loud]) < -10
    # Syllables: the level goes up and down several times a second, unlike a steady tone.
    assert np.std(levels[loud]) > 2
    again = np.concatenate([c for c, _ in stream(text, 65, 8000, 100)])
    assert np.array_equal(audio, again)
