"""Metrics count input-transcription usage on its own model; simulator calls cost nothing."""

from __future__ import annotations

from types import SimpleNamespace

from agi_bridge.config import load_text
from agi_bridge.metrics import Metrics


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value if value is not None else 0.0


def _call(model: str = "gpt-realtime") -> SimpleNamespace:
    """What the metrics observer reads of a call (a CallView): its agent's name, model."""
    return SimpleNamespace(agent_name="default", model=model, stats=SimpleNamespace())


def test_transcription_seconds_and_cost_by_transcription_model() -> None:
    cfg = load_text("realtime: {provider: url, url: 'ws://127.0.0.1:1'}\n", "m.yaml")
    metrics = Metrics(cfg)
    call = _call()
    usage = {"kind": "duration", "seconds": 60.0}
    metrics(call, "transcription_usage", {"item_id": "i", "usage": usage})  # type: ignore[arg-type]
    labels = {"model": "gpt-live-transcribe"}
    assert _value(metrics, "agi_bridge_transcription_audio_seconds_total", **labels) == 60.0
    assert _value(metrics, "agi_bridge_estimated_cost_usd_total", **labels) == 0.017


def test_simulator_calls_count_usage_but_no_cost() -> None:
    metrics = Metrics(load_text("realtime: {provider: simulator}\n", "m.yaml"))
    call = _call()
    usage = {"kind": "duration", "seconds": 60.0}
    metrics(call, "transcription_usage", {"item_id": "i", "usage": usage})  # type: ignore[arg-type]
    done = {"usage": {"input_token_details": {"audio_tokens": 50}}}
    metrics(call, "response_done", done)  # type: ignore[arg-type]
    assert _value(metrics, "agi_bridge_tokens_total", model="gpt-realtime", kind="audio_in") == 50
    assert _value(metrics, "agi_bridge_estimated_cost_usd_total", model="gpt-realtime") == 0.0
    assert (
        _value(metrics, "agi_bridge_estimated_cost_usd_total", model="gpt-live-transcribe") == 0.0
    )
