"""Model resolution and the retirement table: `check` warns, never fails, and says when."""

from __future__ import annotations

import datetime as dt

from agi_bridge.check import check_config
from agi_bridge.config import Config, load_text
from agi_bridge.config.retirements import retirement_warnings
from agi_bridge.models import DEFAULT_TRANSCRIPTION_MODEL, RETIREMENTS

TEXT = """\
realtime:
  provider: simulator
default_agent: a
agents:
  a:
    transcription_model: gpt-4o-mini-transcribe
  b:
    model: gpt-realtime-mini
    voice: juniper
"""


def test_default_transcription_model_has_no_shutdown_date() -> None:
    assert DEFAULT_TRANSCRIPTION_MODEL not in RETIREMENTS
    assert Config().agents["default"].transcription_model == DEFAULT_TRANSCRIPTION_MODEL
    for old in ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"):
        assert RETIREMENTS[old].shutdown == dt.date(2027, 2, 26)
        assert RETIREMENTS[old].successor == "gpt-live-transcribe"


def test_realtime_model_resolution() -> None:
    cfg = load_text(TEXT, "x.yaml")
    assert cfg.model_for(cfg.agents["a"]) == "gpt-realtime"
    assert cfg.model_for(cfg.agents["b"]) == "gpt-realtime-mini"


def test_check_warns_with_line_date_and_successor_and_does_not_fail() -> None:
    cfg = load_text(TEXT, "x.yaml")
    lines: list[str] = []
    check_config(cfg, lines.append)
    assert lines[0].startswith("OK   config x.yaml: 2 agents")
    warns = [line for line in lines if line.startswith("WARN ")]
    assert warns[0].startswith("WARN x.yaml:9 agents.b.voice: voice 'juniper' is not one of")
    assert warns[1].startswith("WARN x.yaml:6 agents.a.transcription_model: gpt-4o-mini-transcribe")
    assert "2027-02-26; successor gpt-live-transcribe" in warns[1]
    assert len(warns) == 2
    before = retirement_warnings(cfg, dt.date(2026, 12, 1))
    assert before == [
        "agents.a.transcription_model: gpt-4o-mini-transcribe shuts down on 2027-02-26; "
        f"successor gpt-live-transcribe (source: {RETIREMENTS['whisper-1'].source})"
    ]
    after = retirement_warnings(cfg, dt.date(2027, 3, 1))
    assert after[0].startswith("agents.a.transcription_model: gpt-4o-mini-transcribe shut down on")


def test_inherited_retiring_model_is_named_once_where_defaults_sets_it() -> None:
    text = "defaults:\n  transcription_model: whisper-1\nagents:\n  default: {}\n  b: {}\n"
    cfg = load_text(text, "d.yaml")
    assert len(cfg.warnings) == 1
    assert cfg.warnings[0].startswith("d.yaml:2 defaults.transcription_model: whisper-1 shut")


def test_no_warnings_for_the_defaults() -> None:
    lines: list[str] = []
    check_config(load_text("realtime: {provider: simulator}\n", "x.yaml"), lines.append)
    assert [line for line in lines if line.startswith("WARN")] == []
