"""Prometheus metrics of one bridge, in its own ``CollectorRegistry``.

Per-event metrics (calls by outcome, turn latency, Realtime errors, tools, tokens, cost)
are updated by :class:`Metrics` as a call observer. Per-frame counters are *not* touched
on the 20 ms path: they are read from the calls' ``CallStats`` when Prometheus scrapes
(live calls) and folded into totals when a call ends.

Every metric is prefixed ``agi_bridge_``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from agi_bridge.config import Config
from agi_bridge.records import TOKEN_KINDS, cost_usd, price_for, token_kinds
from agi_bridge.records.ledger import transcription_kinds

if TYPE_CHECKING:
    from agi_bridge.call.events import CallView

log = logging.getLogger(__name__)

PREFIX = "agi_bridge"
LATENCY_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0)
# CallStats counter -> (metric name without prefix and _total, help)
FRAME_COUNTERS = {
    "frames_in": ("frames_in", "AudioSocket audio frames received from Asterisk"),
    "frames_out": ("frames_out", "audio frames (agent audio or silence) sent to Asterisk"),
    "audio_frames_out": ("audio_frames_out", "frames of agent audio sent to Asterisk"),
    "late_frames": (
        "late_frames",
        "frames released after their 20 ms deadline (counted when a call ends)",
    ),
    "skipped_frames": (
        "skipped_frames",
        "frames skipped by a pacer re-anchor (counted when a call ends)",
    ),
    "underruns": (
        "playout_underruns",
        "playout underruns: silence sent while the model was still streaming",
    ),
    "appends_sent": ("realtime_appends", "input_audio_buffer.append events sent to Realtime"),
    "truncates_sent": ("truncates", "conversation.item.truncate events sent (barge-in)"),
}


class _FrameCollector(Collector):
    """Counters summed over finished calls plus the live ones, computed at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        totals = dict(self._metrics.finished)
        for call in self._metrics.live.values():
            for name in FRAME_COUNTERS:
                totals[name] = totals.get(name, 0) + getattr(call.stats, name)
        for stat, (name, doc) in FRAME_COUNTERS.items():
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=totals.get(stat, 0))
        reconnects = self._metrics.ami_reconnects()
        family = CounterMetricFamily(
            f"{PREFIX}_reconnects", "reconnections, by what reconnected", labels=["target"]
        )
        family.add_metric(["ami"], reconnects)
        family.add_metric(["realtime"], self._metrics.realtime_reconnects)
        yield family


class Metrics:
    """The bridge's metrics; call it as an observer: ``Call(observers=(metrics, ...))``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._simulator = config.uses_simulator()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.live: dict[int, CallView] = {}
        self.finished: dict[str, int] = {}
        self.realtime_reconnects = 0
        self._ami: Any = None
        self.active_calls = Gauge(
            f"{PREFIX}_active_calls", "calls in progress (AudioSocket connections)", registry=r
        )
        self.calls = Counter(
            f"{PREFIX}_calls", "finished calls, by outcome (end reason)", ["outcome"], registry=r
        )
        self.turn_latency = Histogram(
            f"{PREFIX}_turn_latency_seconds",
            "caller stopped speaking -> first agent audio frame released to Asterisk",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.realtime_errors = Counter(
            f"{PREFIX}_realtime_errors", "Realtime error events, by code", ["code"], registry=r
        )
        self.ami_connected = Gauge(
            f"{PREFIX}_ami_connected", "1 while the AMI connection is logged in", registry=r
        )
        self.tool_calls = Counter(
            f"{PREFIX}_tool_calls", "tool calls, by tool and result", ["name", "result"], registry=r
        )
        self.barge_ins = Counter(f"{PREFIX}_barge_ins", "caller talked over the agent", registry=r)
        self.dtmf = Counter(
            f"{PREFIX}_dtmf_digits", "DTMF digits, by direction", ["direction"], registry=r
        )
        self.tokens = Counter(
            f"{PREFIX}_tokens", "Realtime tokens, by model and kind", ["model", "kind"], registry=r
        )
        self.transcription_audio_s = Counter(
            f"{PREFIX}_transcription_audio_seconds",
            "caller audio transcribed, billed by duration, by transcription model",
            ["model"],
            registry=r,
        )
        self.cost = Counter(
            f"{PREFIX}_estimated_cost_usd",
            "estimated Realtime cost from the configured price table, by model",
            ["model"],
            registry=r,
        )
        self.webhook = Counter(
            f"{PREFIX}_webhook_deliveries",
            "call-summary webhook deliveries, by result (delivered, failed, dropped)",
            ["result"],
            registry=r,
        )
        r.register(_FrameCollector(self))
        self.ami_connected.set_function(self._ami_connected_value)

    def bind(self, *, active_calls: Callable[[], int], ami: Any = None) -> None:
        """Read the number of live calls and the AMI state from the bridge at scrape time."""
        self.active_calls.set_function(lambda: float(active_calls()))
        self._ami = ami

    def _ami_connected_value(self) -> float:
        return 1.0 if self._ami is not None and self._ami.connected else 0.0

    def ami_reconnects(self) -> int:
        # AmiClient.connects counts logins; every one after the first is a reconnect
        connects = getattr(self._ami, "connects", 0) if self._ami is not None else 0
        return max(int(connects) - 1, 0) if isinstance(connects, int) else 0

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # ---------------------------------------------------------------- observer

    def __call__(self, call: CallView, kind: str, data: dict[str, Any]) -> None:
        if kind == "start":
            self.live[id(call)] = call
        elif kind == "end":
            self.live.pop(id(call), None)
            for name in FRAME_COUNTERS:
                self.finished[name] = self.finished.get(name, 0) + getattr(call.stats, name)
            self.calls.labels(outcome=str(data.get("reason", "unknown"))).inc()
        elif kind == "turn_latency":
            self.turn_latency.observe(float(data.get("ms", 0.0)) / 1000)
        elif kind == "realtime_error":
            self.realtime_errors.labels(code=str(data.get("code") or "unknown")).inc()
        elif kind == "tool_result":
            result = data.get("result")
            ok = isinstance(result, Mapping) and bool(result.get("ok"))
            self.tool_calls.labels(name=str(data.get("name")), result="ok" if ok else "error").inc()
        elif kind == "barge_in":
            self.barge_ins.inc()
        elif kind == "dtmf_sent":
            self.dtmf.labels(direction="sent").inc()
        elif kind == "caller_dtmf":
            self.dtmf.labels(direction="received").inc()
        elif kind == "reconnect":
            self.realtime_reconnects += 1
        elif kind == "response_done":
            usage = data.get("usage")
            if isinstance(usage, Mapping):
                self._add_usage(call.model, token_kinds(usage), 0.0)
        elif kind == "transcription_usage":
            # billed at the transcription model's own price, not the realtime model's
            usage = data.get("usage")
            asr = self.config.agent(call.agent_name)[1].transcription_model
            if isinstance(usage, Mapping) and asr:
                tokens, seconds = transcription_kinds(usage)
                self._add_usage(asr, tokens, seconds)

    def _add_usage(self, model: str, tokens: Mapping[str, int], seconds: float) -> None:
        for kind in TOKEN_KINDS:
            if tokens.get(kind):
                self.tokens.labels(model=model, kind=kind).inc(tokens[kind])
        if seconds:
            self.transcription_audio_s.labels(model=model).inc(seconds)
        if self._simulator:
            return  # the bundled simulator is a test double: no cost
        entry = price_for(self.config.prices, model)
        if entry is not None:
            self.cost.labels(model=model).inc(cost_usd(tokens, entry[1], seconds))
