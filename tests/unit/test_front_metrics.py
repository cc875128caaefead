"""The supervisor's front merges the workers' /metrics into one exposition (front.py)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from agi_bridge.front import front_metrics, labelled, merge_metrics

WORKER = """\
# HELP agi_bridge_calls_total Calls handled.
# TYPE agi_bridge_calls_total counter
agi_bridge_calls_total{outcome="completed"} 3.0
agi_bridge_calls_total{outcome="failed"} 1.0
# HELP agi_bridge_active_calls Live calls.
# TYPE agi_bridge_active_calls gauge
agi_bridge_active_calls 2.0
# HELP agi_bridge_turn_latency_seconds Turn latency.
# TYPE agi_bridge_turn_latency_seconds histogram
agi_bridge_turn_latency_seconds_bucket{le="0.5"} 1.0
agi_bridge_turn_latency_seconds_bucket{le="+Inf"} 2.0
agi_bridge_turn_latency_seconds_count 2.0
agi_bridge_turn_latency_seconds_sum 0.9
"""


def test_a_label_is_added_first_with_or_without_labels() -> None:
    assert labelled('a_total{x="1"} 3.0', 2) == 'a_total{worker="2",x="1"} 3.0'
    assert labelled("a 1.0", 0) == 'a{worker="0"} 1.0'
    assert labelled("a{} 1.0 123", 1) == 'a{worker="1"} 1.0 123'
    assert labelled('a{x="a b{c}"} 1', 1) == 'a{worker="1",x="a b{c}"} 1'


def test_each_family_once_with_every_worker_sample_labelled() -> None:
    text = merge_metrics({0: WORKER, 1: WORKER.replace(" 3.0", " 5.0")})
    assert text.count("# HELP agi_bridge_calls_total") == 1
    assert text.count("# TYPE agi_bridge_turn_latency_seconds histogram") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    calls = {
        (s.labels["worker"], s.labels["outcome"]): s.value
        for s in families["agi_bridge_calls"].samples
    }
    assert calls == {
        ("0", "completed"): 3,
        ("0", "failed"): 1,
        ("1", "completed"): 5,
        ("1", "failed"): 1,
    }
    buckets = [
        s for s in families["agi_bridge_turn_latency_seconds"].samples if s.name.endswith("_bucket")
    ]
    assert {s.labels["worker"] for s in buckets} == {"0", "1"} and len(buckets) == 4


def test_a_silent_worker_leaves_its_samples_out_and_shows_as_down() -> None:
    text = merge_metrics({1: WORKER}) + front_metrics([False, True], restarts=4)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    up = {s.labels["worker"]: s.value for s in families["agi_bridge_worker_up"].samples}
    assert up == {"0": 0, "1": 1}
    assert families["agi_bridge_worker_restarts"].samples[0].value == 4
    assert {s.labels["worker"] for s in families["agi_bridge_active_calls"].samples} == {"1"}
