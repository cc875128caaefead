"""Usage and cost of a call: token kinds, the price table (exact names), the Ledger."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agi_bridge.config import Price

TOKEN_KINDS = ("audio_in", "cached_audio_in", "text_in", "cached_text_in", "audio_out", "text_out")
_MAX_LIST = 1000  # bound on per-call lists kept in memory (latencies, tool calls, errors)


# ------------------------------------------------------------------------ usage and cost


def token_kinds(usage: Mapping[str, Any]) -> dict[str, int]:
    """``response.done`` usage -> tokens by price kind (``audio_in`` excludes cached ones).

    When the service reports ``cached_tokens`` without the audio/text split, the cached
    tokens are counted as text first (the cheaper reading of a cache hit, so the cost
    estimate errs high rather than low).
    """
    inp = _dict(usage.get("input_token_details"))
    out = _dict(usage.get("output_token_details"))
    audio_in, text_in = _int(inp.get("audio_tokens")), _int(inp.get("text_tokens"))
    split = _dict(inp.get("cached_tokens_details"))
    if split:
        cached_audio = min(_int(split.get("audio_tokens")), audio_in)
        cached_text = min(_int(split.get("text_tokens")), text_in)
    else:
        cached = _int(inp.get("cached_tokens"))
        cached_text = min(cached, text_in)
        cached_audio = min(cached - cached_text, audio_in)
    return {
        "audio_in": audio_in - cached_audio,
        "cached_audio_in": cached_audio,
        "text_in": text_in - cached_text,
        "cached_text_in": cached_text,
        "audio_out": _int(out.get("audio_tokens")),
        "text_out": _int(out.get("text_tokens")),
    }


def price_for(prices: Mapping[str, Price], model: str) -> tuple[str, Price] | None:
    """The price entry of exactly ``model`` (following one ``same_as``), else None.

    No prefix matching: ``gpt-realtime-2.1-mini`` must not be priced as ``gpt-realtime``.
    """
    entry = prices.get(model)
    if entry is None:
        return None
    if entry.same_as:
        target = prices.get(entry.same_as)
        return (entry.same_as, target) if target is not None else None
    return model, entry


def cost_usd(tokens: Mapping[str, int], price: Price, seconds: float = 0.0) -> float:
    """Tokens (per 1M) plus audio billed by duration (``audio_minute``)."""
    total = 0.0
    for kind in TOKEN_KINDS:
        per_million: float = getattr(price, kind)
        total += tokens.get(kind, 0) * per_million
    return total / 1_000_000 + seconds / 60 * price.audio_minute


def transcription_kinds(usage: Mapping[str, Any]) -> tuple[dict[str, int], float]:
    """A ``transcription_usage`` event's usage (``rt.TranscriptionUsage`` as a dict) ->
    (tokens by price kind, seconds billed by duration)."""
    if usage.get("kind") == "duration":
        seconds = usage.get("seconds")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
            return {}, 0.0
        return {}, float(seconds)
    return {
        "audio_in": _int(usage.get("audio_tokens")),
        "text_in": _int(usage.get("text_tokens")),
        "text_out": _int(usage.get("output_tokens")),
    }, 0.0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# ------------------------------------------------------------------------------- ledger


@dataclass
class Ledger:
    """What a call amounts to, folded from its events (live, or replayed from a log)."""

    prices: Mapping[str, Price]
    model: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # the start event's data
    end: dict[str, Any] | None = None
    duration_s: float = 0.0
    caller_turns: int = 0
    agent_turns: int = 0
    responses: int = 0
    barge_ins: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_KINDS, 0))
    latency_ms: list[float] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    dtmf_sent: str = ""
    caller_dtmf: str = ""
    errors: list[str] = field(default_factory=list)
    # who answered: "simulator" for the bundled test double (its calls cost nothing)
    provider: str = ""
    transcription_model: str = ""
    transcription_tokens: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(TOKEN_KINDS, 0)
    )
    transcription_seconds: float = 0.0
    # cumulative billed session seconds (GPT-Live bills per second of session time)
    session_seconds: float = 0.0

    def add(self, kind: str, data: Mapping[str, Any], t: float) -> None:
        self.duration_s = max(self.duration_s, t)
        if kind == "start":
            self.info = dict(data)
            self.model = str(data.get("model") or self.model)
            self.provider = str(data.get("provider") or self.provider)
            self.transcription_model = str(data.get("transcription_model") or "")
        elif kind == "speech_stopped":
            self.caller_turns += 1
        elif kind == "agent_transcript":
            self.agent_turns += 1
        elif kind == "barge_in":
            self.barge_ins += 1
        elif kind == "response_done":
            self.responses += 1
            for name, n in token_kinds(_dict(data.get("usage"))).items():
                self.tokens[name] += n
        elif kind == "transcription_usage":
            tokens, seconds = transcription_kinds(_dict(data.get("usage")))
            for name, n in tokens.items():
                self.transcription_tokens[name] += n
            self.transcription_seconds += seconds
        elif kind == "session_usage":
            # cumulative totals, not increments (GPT-Live session.usage.updated)
            total = data.get("seconds")
            if isinstance(total, (int, float)) and not isinstance(total, bool):
                self.session_seconds = max(self.session_seconds, float(total))
        elif kind == "turn_latency" and len(self.latency_ms) < _MAX_LIST:
            self.latency_ms.append(float(data.get("ms", 0.0)))
        elif kind == "tool_result" and len(self.tool_calls) < _MAX_LIST:
            result = data.get("result")
            ok = bool(result.get("ok")) if isinstance(result, dict) else False
            self.tool_calls.append({"name": data.get("name", ""), "ok": ok})
        elif kind == "dtmf_sent":
            self.dtmf_sent += str(data.get("digit", ""))
        elif kind == "caller_dtmf":
            self.caller_dtmf += str(data.get("digit", ""))
        elif kind == "realtime_error" and len(self.errors) < _MAX_LIST:
            self.errors.append(str(data.get("code") or data.get("message") or "error"))
        elif kind == "end":
            self.end = dict(data)

    @property
    def price(self) -> tuple[str, Price] | None:
        return price_for(self.prices, self.model) if self.model else None

    def costs(self) -> tuple[dict[str, float | None], list[str]]:
        """Cost by part (``None``: not priced) and notes saying why a part has no cost."""
        if self.provider == "simulator":
            note = "answered by the bundled simulator: no cost"
            return {"realtime": None, "transcription": None, "session": None}, [note]
        parts: dict[str, float | None] = {}
        notes: list[str] = []
        uses: tuple[tuple[str, str, Mapping[str, int], float, bool], ...] = (
            ("realtime", self.model, self.tokens, 0.0, True),
            (
                "transcription",
                self.transcription_model,
                self.transcription_tokens,
                self.transcription_seconds,
                any(self.transcription_tokens.values()) or self.transcription_seconds > 0,
            ),
            ("session", self.model, {}, self.session_seconds, self.session_seconds > 0),
        )
        for part, model, tokens, seconds, used in uses:
            if not used or not model:
                parts[part] = None
                continue
            entry = price_for(self.prices, model)
            if entry is None:
                parts[part] = None
                note = f"no price for model {model}"
                if note not in notes:
                    notes.append(note)
                continue
            parts[part] = round(cost_usd(tokens, entry[1], seconds), 6)
        return parts, notes

    @property
    def cost_usd(self) -> float | None:
        """The sum of the priced parts; None when nothing could be priced."""
        known = [v for v in self.costs()[0].values() if v is not None]
        return round(sum(known), 6) if known else None

    def summary(self) -> dict[str, Any]:
        entry = self.price if self.provider != "simulator" else None
        parts, notes = self.costs()
        lat = self.latency_ms
        out: dict[str, Any] = {
            "call_id": self.info.get("call_id", ""),
            "started_at": self.info.get("time", ""),
            "duration_s": round(self.duration_s, 3),
            "outcome": self.end.get("reason", "") if self.end else "unfinished",
            "detail": self.end.get("detail", "") if self.end else "",
            "caller": self.info.get("caller", ""),
            "dnid": self.info.get("dnid", ""),
            "agent": self.info.get("agent", ""),
            "channel": self.info.get("channel", ""),
            "model": self.model,
            "turns": {"caller": self.caller_turns, "agent": self.agent_turns},
            "responses": self.responses,
            "barge_ins": self.barge_ins,
            "latency_ms": {
                "turns": lat,
                "p50": round(statistics.median(lat), 1) if lat else None,
                "max": round(max(lat), 1) if lat else None,
            },
            "tokens": dict(self.tokens),
            "cost_usd": self.cost_usd,
            "costs": parts,
            "cost_notes": notes,
            "price": entry[0] if entry else None,
            "provider": self.provider,
            "transcription": {
                "model": self.transcription_model,
                "tokens": {k: v for k, v in self.transcription_tokens.items() if v},
                "seconds": round(self.transcription_seconds, 3),
            },
            "session_seconds": round(self.session_seconds, 3),
            "tool_calls": self.tool_calls,
            "dtmf_sent": self.dtmf_sent,
            "caller_dtmf": self.caller_dtmf,
            "errors": self.errors,
        }
        return out
