"""Per-call records: event log, summary (turns, latency, tokens, cost) and the recording.

Layout (UTC dates, so a directory listing sorts by time)::

    records/2026/11/22/143205_<call_id>/
        events.jsonl   one JSON object per line, written and flushed as the call goes
        summary.json   written when the call ends (missing if the bridge was killed)
        call.wav       optional: stereo, caller left, agent right, 8 kHz slin16

Every line of ``events.jsonl`` is ``{"t": seconds since the call started, "time": ISO UTC,
"event": kind, ...the event's data}`` for every event a :class:`~agi_bridge.call.Call`
emits (start, speech_started, caller_transcript, tool_call, barge_in, response_done with
its usage, turn_latency, end ...). Lines are flushed one by one, so a bridge killed with
``kill -9`` leaves a valid log up to its last event; ``agi-bridge show`` and ``calls``
rebuild what they can from such a partial log with the same :class:`Ledger` the live
bridge uses.

Cost is an estimate: token counts from ``response.done`` usage times the configured price
table (``prices:`` in the config, USD per 1M tokens).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import statistics
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from agi_bridge import audio
from agi_bridge.audio import SAMPLE_RATE, SLIN_FRAME_BYTES
from agi_bridge.config import Config, Price

if TYPE_CHECKING:
    from agi_bridge.call.events import CallView

log = logging.getLogger(__name__)

EVENTS_FILE = "events.jsonl"
SUMMARY_FILE = "summary.json"
WAV_FILE = "call.wav"
TOKEN_KINDS = ("audio_in", "cached_audio_in", "text_in", "cached_text_in", "audio_out", "text_out")
_MAX_LIST = 1000  # bound on per-call lists kept in memory (latencies, tool calls, errors)
_DIR_RE = re.compile(r"^(\d{6})_(.+)$")


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
    """The price entry of ``model``: exact name, else the longest name it starts with."""
    if model in prices:
        return model, prices[model]
    matches = [name for name in prices if model.startswith(name)]
    if not matches:
        return None
    name = max(matches, key=len)
    return name, prices[name]


def cost_usd(tokens: Mapping[str, int], price: Price) -> float:
    total = 0.0
    for kind in TOKEN_KINDS:
        per_million: float = getattr(price, kind)
        total += tokens.get(kind, 0) * per_million
    return total / 1_000_000


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

    def add(self, kind: str, data: Mapping[str, Any], t: float) -> None:
        self.duration_s = max(self.duration_s, t)
        if kind == "start":
            self.info = dict(data)
            self.model = str(data.get("model") or self.model)
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

    @property
    def cost_usd(self) -> float | None:
        entry = self.price
        return round(cost_usd(self.tokens, entry[1]), 6) if entry else None

    def summary(self) -> dict[str, Any]:
        entry = self.price
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
            "price": entry[0] if entry else None,
            "tool_calls": self.tool_calls,
            "dtmf_sent": self.dtmf_sent,
            "caller_dtmf": self.caller_dtmf,
            "errors": self.errors,
        }
        return out


# --------------------------------------------------------------------------- recording

_WAV_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
_CHANNELS = 2


def _wav_header(data_bytes: int) -> bytes:
    return _WAV_HEADER.pack(
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        _CHANNELS,
        SAMPLE_RATE,
        SAMPLE_RATE * 2 * _CHANNELS,
        2 * _CHANNELS,
        16,
        b"data",
        data_bytes,
    )


class WavRecorder:
    """Stereo recording of one call: caller left, agent right, on one 20 ms timeline.

    The call feeds it from its two audio paths (``Call.recorder``): ``agent_frame`` once
    per frame the playout clock released to Asterisk (so a barge-in cut is recorded
    exactly as heard: silence after the cut), ``caller_audio`` per frame received.

    Alignment. The timeline is the playout clock: sample ``n`` of the file is the 20 ms
    tick ``n // 160`` of the pacer, counted from the first released frame. The agent
    channel is simply every released frame in order, plus silence for the frames a pacer
    re-anchor skipped (``skipped`` is the pacer's running count), so it *is* the clock.
    Caller frames arrive at Asterisk's pace, in TCP batches and with jitter, so they are
    placed by arrival time on that clock: the caller audio received between two ticks
    is one batch that ended when its last frame arrived. A batch is appended right after
    the previous caller audio while that is within ``jitter_ms`` of where the clock puts
    it; if it starts later (the caller sent nothing for a while) the gap is filled with
    silence, if earlier (late audio, or Asterisk's clock running fast) its overlap is
    dropped. A caller that sends nothing at all is padded with silence up to
    ``idle_lag_ms`` behind the clock, so memory stays bounded and the file keeps growing.

    Samples are written when both channels have them; the header is fixed up and the
    file flushed every second, so a killed bridge leaves a WAV readable up to then.
    Everything here is a few bytearray operations per frame: this runs on the 20 ms path.
    """

    FLUSH_TICKS = 50  # 1 s

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        jitter_ms: int = 60,
        idle_lag_ms: int = 200,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._jitter = jitter_ms * SAMPLE_RATE // 1000
        self._idle_lag = idle_lag_ms * SAMPLE_RATE // 1000
        self._file: IO[bytes] | None = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._file.write(_wav_header(0))
        self._caller = bytearray()  # placed caller samples not yet written
        self._agent = bytearray()  # released agent samples not yet written
        self._pending = bytearray()  # caller audio received since the last tick
        self._pending_at = 0.0
        self._origin: float | None = None
        self._skipped = 0
        self.written = 0  # stereo sample frames in the file
        self._ticks = 0

    @property
    def duration_s(self) -> float:
        return self.written / SAMPLE_RATE

    def caller_audio(self, pcm: bytes) -> None:
        self._pending += pcm
        self._pending_at = self._clock()

    def agent_frame(self, pcm: bytes, skipped: int = 0) -> None:
        if self._file is None:
            return
        now = self._clock()
        if self._origin is None:
            self._origin = now
            self._skipped = skipped
        if skipped > self._skipped:
            self._agent += bytes(SLIN_FRAME_BYTES * (skipped - self._skipped))
            self._skipped = skipped
        self._agent += pcm
        self._place_caller(now, self._origin)
        try:
            self._write()
            self._ticks += 1
            if self._ticks % self.FLUSH_TICKS == 0:
                self._fix_header()
        except OSError as exc:
            self._fail(exc)

    def _place_caller(self, now: float, origin: float) -> None:
        cur = self.written + len(self._caller) // 2  # end of the caller track, in samples
        if self._pending:
            pending = self._pending
            n = len(pending) // 2
            start = round((self._pending_at - origin) * SAMPLE_RATE) - n
            if start > cur + self._jitter:
                self._caller += bytes(2 * (start - cur))  # the caller sent nothing meanwhile
            elif start < cur - self._jitter:
                del pending[: 2 * min(cur - start, n)]  # overlaps what is placed already
            self._caller += pending
            pending.clear()
        else:
            target = round((now - origin) * SAMPLE_RATE) - self._idle_lag
            if cur < target:
                self._caller += bytes(2 * (target - cur))

    def _write(self) -> None:
        n = min(len(self._caller), len(self._agent)) // 2
        if n <= 0 or self._file is None:
            return
        # interleave caller (left) and agent (right) with the same stdlib codec module
        left = audio.to_stereo(bytes(self._caller[: 2 * n]), left=True)
        right = audio.to_stereo(bytes(self._agent[: 2 * n]), left=False)
        self._file.write(audio.mix(left, right))
        del self._caller[: 2 * n]
        del self._agent[: 2 * n]
        self.written += n

    def _fix_header(self) -> None:
        assert self._file is not None
        self._file.seek(0)
        self._file.write(_wav_header(self.written * 2 * _CHANNELS))
        self._file.seek(0, os.SEEK_END)
        self._file.flush()

    def _fail(self, exc: OSError) -> None:
        log.error("recording %s stopped: %s", self.path, exc)
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()

    def close(self) -> None:
        """Write what is left (the shorter channel padded with silence), fix the header."""
        if self._file is None:
            return
        if self._origin is not None:
            self._place_caller(self._clock(), self._origin)
        longest = max(len(self._caller), len(self._agent))
        self._caller += bytes(longest - len(self._caller))
        self._agent += bytes(longest - len(self._agent))
        try:
            self._write()
            self._fix_header()
            self._file.close()
        except OSError as exc:
            self._fail(exc)
        self._file = None


# ------------------------------------------------------------------------- the records


def call_dir(root: Path, started: dt.datetime, call_id: str) -> Path:
    """``root/YYYY/MM/DD/HHMMSS_<call_id>`` (UTC)."""
    utc = started.astimezone(dt.UTC)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", call_id) or "unknown"
    return root / f"{utc:%Y}" / f"{utc:%m}" / f"{utc:%d}" / f"{utc:%H%M%S}_{safe}"


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


class CallRecord:
    """The record of one live call: the event log as it goes, the summary at the end."""

    def __init__(
        self,
        call: CallView,
        data: Mapping[str, Any],
        *,
        config: Config,
        root: Path | None,
        wall: Callable[[], float],
    ) -> None:
        self.call_id = call.call_id
        self._wall = wall
        self._log = logging.LoggerAdapter(log, {"call_id": call.call_id})
        model = call.model
        self.ledger = Ledger(config.prices, model)
        self.dir: Path | None = None
        self._events: IO[str] | None = None
        self.wav: WavRecorder | None = None
        started = wall() - call.duration_s
        self.started_at = _iso(started)
        start = {
            "call_id": call.call_id,
            "time": self.started_at,
            **data,
            "caller_name": call.identity.caller_name,
            "model": model,
        }
        if root is not None:
            try:
                self.dir = call_dir(root, dt.datetime.fromtimestamp(started, dt.UTC), call.call_id)
                self.dir.mkdir(parents=True, exist_ok=True)
                # line-buffered: every event reaches the OS when written (survives kill -9)
                self._events = open(self.dir / EVENTS_FILE, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
                if config.records.wav:
                    self.wav = WavRecorder(self.dir / WAV_FILE)
            except OSError as exc:
                self._log.error("cannot write the call record in %s: %s", root, exc)
                self._close_events()
        self.add(call, "start", start)

    def add(self, call: CallView, kind: str, data: Mapping[str, Any]) -> None:
        t = call.duration_s
        self.ledger.add(kind, data, t)
        if self._events is None:
            return
        line = {"t": round(t, 3), "time": _iso(self._wall()), "event": kind, **data}
        try:
            self._events.write(json.dumps(line, default=str, ensure_ascii=False) + "\n")
        except OSError as exc:
            self._log.error("call record %s stopped: %s", self.dir, exc)
            self._close_events()

    def finish(self, call: CallView) -> dict[str, Any]:
        """Close the recording and the log; write and return the summary."""
        if self.wav is not None:
            self.wav.close()
        self._close_events()
        summary = self.ledger.summary()
        summary["started_at"] = self.started_at
        summary["ended_at"] = _iso(self._wall())
        summary["duration_s"] = round(call.duration_s, 3)
        s = call.stats
        summary["stats"] = {
            "frames_in": s.frames_in,
            "frames_out": s.frames_out,
            "audio_frames_out": s.audio_frames_out,
            "late_frames": s.late_frames,
            "skipped_frames": s.skipped_frames,
            "underruns": s.underruns,
            "dropped_ms": round(s.dropped_ms, 1),
            "truncates_sent": s.truncates_sent,
        }
        summary["record_dir"] = str(self.dir) if self.dir is not None else None
        summary["recording"] = WAV_FILE if self.wav is not None else None
        if self.dir is not None:
            tmp = self.dir / (SUMMARY_FILE + ".tmp")
            try:
                tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
                tmp.replace(self.dir / SUMMARY_FILE)
            except OSError as exc:
                self._log.error("cannot write %s: %s", tmp, exc)
        return summary

    def _close_events(self) -> None:
        events, self._events = self._events, None
        if events is not None:
            with contextlib.suppress(OSError):
                events.close()


SummaryCallback = Callable[[dict[str, Any]], None]


class CallRecords:
    """Bridge-wide observer (``Call(observers=...)``) that keeps one record per call.

    With ``records.enabled`` it writes the files; either way it folds every call into a
    summary, logs it, and hands it to ``on_summary`` callbacks (the webhook).
    """

    def __init__(
        self,
        config: Config,
        *,
        wall: Callable[[], float] = time.time,
        on_summary: tuple[SummaryCallback, ...] = (),
    ) -> None:
        self.config = config
        self.root: Path | None = Path(config.records.dir) if config.records.enabled else None
        self._wall = wall
        self.on_summary = list(on_summary)
        self._live: dict[int, CallRecord] = {}
        self.last_summary: dict[str, Any] | None = None

    def __call__(self, call: CallView, kind: str, data: dict[str, Any]) -> None:
        key = id(call)
        if kind == "start":
            started = CallRecord(call, data, config=self.config, root=self.root, wall=self._wall)
            self._live[key] = started
            call.attach_recorder(started.wav)
            return
        record = self._live.get(key)
        if record is None:
            return  # ended before it started (no UUID frame): nothing to record
        record.add(call, kind, data)
        if kind == "end":
            del self._live[key]
            call.attach_recorder(None)
            summary = record.finish(call)
            self.last_summary = summary
            _log_summary(call, summary)
            for callback in self.on_summary:
                try:
                    callback(summary)
                except Exception:
                    log.exception("summary callback %r failed", callback)

    def purge(self, today: dt.date | None = None) -> int:
        """Delete day directories older than ``records.retention_days``; returns how many."""
        days = self.config.records.retention_days
        if self.root is None or days <= 0:
            return 0
        return purge(self.root, days, today)


def _log_summary(call: CallView, summary: Mapping[str, Any]) -> None:
    cost = summary.get("cost_usd")
    lat = summary["latency_ms"]
    logging.LoggerAdapter(log, {"call_id": call.call_id}).info(
        "call summary: %s after %.1f s, %d caller / %d agent turns, latency p50 %s ms, "
        "tokens %d in / %d out, cost %s",
        summary["outcome"],
        summary["duration_s"],
        summary["turns"]["caller"],
        summary["turns"]["agent"],
        f"{lat['p50']:.0f}" if lat["p50"] is not None else "-",
        sum(v for k, v in summary["tokens"].items() if k.endswith("_in")),
        sum(v for k, v in summary["tokens"].items() if k.endswith("_out")),
        f"${cost:.4f}" if cost is not None else "unknown (no price for the model)",
    )


def purge(root: Path, retention_days: int, today: dt.date | None = None) -> int:
    """Delete ``root/YYYY/MM/DD`` older than ``retention_days`` (and emptied parents)."""
    today = today or dt.datetime.now(dt.UTC).date()
    cutoff = today - dt.timedelta(days=retention_days)
    removed = 0
    for year in _numbered(root, 4):
        for month in _numbered(year, 2):
            for day in _numbered(month, 2):
                try:
                    date = dt.date(int(year.name), int(month.name), int(day.name))
                except ValueError:
                    continue
                if date < cutoff:
                    shutil.rmtree(day, ignore_errors=True)
                    removed += 1
            with contextlib.suppress(OSError):
                month.rmdir()  # only when empty
        with contextlib.suppress(OSError):
            year.rmdir()
    if removed:
        log.info("records: deleted %d day directories older than %d days", removed, retention_days)
    return removed


def _numbered(path: Path, digits: int) -> list[Path]:
    try:
        entries = list(path.iterdir())
    except OSError:
        return []
    return sorted(p for p in entries if p.is_dir() and len(p.name) == digits and p.name.isdigit())


# ---------------------------------------------------------------------- reading records


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events of a log; a torn last line (the bridge was killed) is skipped."""
    events = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                events.append(obj)
    return events


def replay(events: list[dict[str, Any]], prices: Mapping[str, Price]) -> Ledger:
    """Fold a (possibly partial) event log into a ledger, as the live bridge did."""
    ledger = Ledger(prices)
    for ev in events:
        data = {k: v for k, v in ev.items() if k not in ("t", "event")}
        if ev.get("event") == "start":
            data["time"] = ev.get("time", "")
        ledger.add(str(ev.get("event", "")), data, float(ev.get("t", 0.0)))
    return ledger


def load_summary(call_path: Path, prices: Mapping[str, Price]) -> dict[str, Any]:
    """summary.json, or one rebuilt from events.jsonl when the call did not finish."""
    summary_file = call_path / SUMMARY_FILE
    if summary_file.exists():
        with contextlib.suppress(OSError, json.JSONDecodeError):
            data = json.loads(summary_file.read_text())
            if isinstance(data, dict):
                return data
    events_file = call_path / EVENTS_FILE
    events = read_events(events_file) if events_file.exists() else []
    summary = replay(events, prices).summary()
    summary["record_dir"] = str(call_path)
    if not summary["call_id"]:
        match = _DIR_RE.match(call_path.name)
        summary["call_id"] = match.group(2) if match else call_path.name
    return summary


def iter_call_dirs(root: Path) -> Iterator[Path]:
    """Call directories, newest first."""
    for year in reversed(_numbered(root, 4)):
        for month in reversed(_numbered(year, 2)):
            for day in reversed(_numbered(month, 2)):
                try:
                    calls = [p for p in day.iterdir() if p.is_dir() and _DIR_RE.match(p.name)]
                except OSError:
                    continue
                yield from sorted(calls, key=lambda p: p.name, reverse=True)


def find_call(root: Path, call_id: str) -> Path | None:
    """The directory of a call by its id (or a unique prefix of it)."""
    wanted = call_id.lower()
    found = []
    for path in iter_call_dirs(root):
        match = _DIR_RE.match(path.name)
        if match is None:
            continue
        if match.group(2).lower() == wanted:
            return path
        if match.group(2).lower().startswith(wanted):
            found.append(path)
    return found[0] if len(found) == 1 else None


def format_calls(summaries: list[dict[str, Any]]) -> str:
    """The table of ``agi-bridge calls``."""
    rows = [("TIME (UTC)", "CALL ID", "CALLER", "AGENT", "DURATION", "OUTCOME", "COST")]
    for s in summaries:
        started = str(s.get("started_at") or "")[:19].replace("T", " ")
        cost = s.get("cost_usd")
        rows.append(
            (
                started or "?",
                str(s.get("call_id", "")),
                str(s.get("caller") or "-"),
                str(s.get("agent") or "-"),
                f"{float(s.get('duration_s') or 0):.1f}s",
                str(s.get("outcome") or "-"),
                f"${cost:.4f}" if isinstance(cost, int | float) else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def format_transcript(events: list[dict[str, Any]], summary: Mapping[str, Any]) -> str:
    """The readable call of ``agi-bridge show``: who said what when, tools, the outcome."""
    lines = []
    start = next((e for e in events if e.get("event") == "start"), {})
    lines.append(
        f"call {summary.get('call_id') or start.get('call_id', '?')}  "
        f"{str(summary.get('started_at') or start.get('time', ''))[:23].replace('T', ' ')} UTC"
    )
    lines.append(
        f"  caller {summary.get('caller') or '-'} -> {summary.get('dnid') or '-'}   "
        f"agent {summary.get('agent') or '-'} ({summary.get('model') or '?'})   "
        f"channel {summary.get('channel') or '-'}"
    )
    lines.append("")
    for ev in events:
        text = _describe(ev)
        if text:
            lines.append(f"{float(ev.get('t', 0.0)):7.2f}s  {text}")
    if not any(e.get("event") == "end" for e in events):
        lines.append("         (log ends here: the call did not finish in this log)")
    lines.append("")
    lat = summary.get("latency_ms") or {}
    tokens = summary.get("tokens") or {}
    cost = summary.get("cost_usd")
    turns = summary.get("turns") or {}
    lines.append(
        f"outcome {summary.get('outcome', '?')}"
        + (f" ({summary['detail']})" if summary.get("detail") else "")
        + f"   duration {float(summary.get('duration_s') or 0):.1f} s"
        + f"   turns {turns.get('caller', 0)} caller / {turns.get('agent', 0)} agent"
    )
    turn_ms = lat.get("turns") or []
    if turn_ms:
        lines.append(
            "latency  " + ", ".join(f"{ms:.0f}" for ms in turn_ms) + " ms"
            f"   (p50 {lat.get('p50')}, max {lat.get('max')})"
        )
    if tokens:
        lines.append("tokens   " + ", ".join(f"{k} {v}" for k, v in tokens.items()))
    lines.append(
        "cost     "
        + (
            f"${cost:.4f} (prices of {summary.get('price')})"
            if isinstance(cost, int | float)
            else "unknown (no price for this model)"
        )
    )
    return "\n".join(lines)


def _describe(ev: Mapping[str, Any]) -> str:
    kind = ev.get("event")
    if kind == "start":
        return f"call started (agent {ev.get('agent') or '-'}, caller {ev.get('caller') or '-'})"
    if kind == "speech_started":
        return "caller  ... starts speaking"
    if kind == "speech_stopped":
        return "caller  ... stops speaking"
    if kind == "caller_transcript":
        return f"caller: {ev.get('text', '')}"
    if kind == "agent_transcript":
        return f"agent : {ev.get('text', '')}"
    if kind == "turn_latency":
        ms = float(ev.get("ms", 0))
        return f"        (first agent audio {ms:.0f} ms after the caller stopped)"
    if kind == "barge_in":
        return (
            f"        (barge-in: agent cut at {ev.get('audio_end_ms')} ms heard, "
            f"{float(ev.get('dropped_ms') or 0):.0f} ms dropped)"
        )
    if kind == "tool_call":
        return f"tool    {ev.get('name')}({ev.get('arguments', '')})"
    if kind == "tool_result":
        return f"tool    {ev.get('name')} -> {json.dumps(ev.get('result'), default=str)}"
    if kind == "dtmf_sent":
        return f"agent presses {ev.get('digit')}"
    if kind == "caller_dtmf":
        return f"caller presses {ev.get('digit')}"
    if kind == "realtime_error":
        return f"Realtime error {ev.get('code') or '-'}: {ev.get('message', '')}"
    if kind == "response_done":
        status = ev.get("status")
        return f"        (response {status})" if status and status != "completed" else ""
    if kind == "end":
        detail = f" ({ev['detail']})" if ev.get("detail") else ""
        return f"call ended: {ev.get('reason')}{detail}"
    if kind:
        rest = {k: v for k, v in ev.items() if k not in ("t", "time", "event")}
        return f"{kind} {json.dumps(rest, default=str)}" if rest else str(kind)
    return ""


def recent_summaries(root: Path, prices: Mapping[str, Price], limit: int) -> list[dict[str, Any]]:
    """The summaries of the ``limit`` most recent calls (rebuilt for unfinished ones)."""
    out: list[dict[str, Any]] = []
    for path in iter_call_dirs(root):
        if len(out) >= limit:
            break
        out.append(load_summary(path, prices))
    return out


def show_call(root: Path, call_id: str, prices: Mapping[str, Price]) -> str | None:
    """The transcript of ``agi-bridge show``, or None when no such call is recorded."""
    path = find_call(root, call_id)
    if path is None:
        return None
    events_file = path / EVENTS_FILE
    events = read_events(events_file) if events_file.exists() else []
    text = format_transcript(events, load_summary(path, prices))
    if (path / WAV_FILE).exists():
        text += f"\nrecording {path / WAV_FILE}"
    return text
