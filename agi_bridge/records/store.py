"""Writing records: one CallRecord per live call, the bridge-wide CallRecords observer,
and the retention purge."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from agi_bridge.config import Config
from agi_bridge.records.ledger import Ledger
from agi_bridge.records.wav import WavRecorder

if TYPE_CHECKING:
    from agi_bridge.call.events import CallView

log = logging.getLogger("agi_bridge.records")

EVENTS_FILE = "events.jsonl"
SUMMARY_FILE = "summary.json"
WAV_FILE = "call.wav"


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
        agent = config.agent(call.agent_name)[1]
        start = {
            "call_id": call.call_id,
            "time": self.started_at,
            **data,
            "caller_name": call.identity.caller_name,
            "model": model,
            "transcription_model": agent.transcription_model,
            # the bundled simulator is a test double: its calls cost nothing
            "provider": "simulator" if config.uses_simulator() else config.realtime.provider,
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
        "tokens %d in / %d out, cost %s%s",
        summary["outcome"],
        summary["duration_s"],
        summary["turns"]["caller"],
        summary["turns"]["agent"],
        f"{lat['p50']:.0f}" if lat["p50"] is not None else "-",
        sum(v for k, v in summary["tokens"].items() if k.endswith("_in")),
        sum(v for k, v in summary["tokens"].items() if k.endswith("_out")),
        f"${cost:.4f}" if cost is not None else "none",
        f" ({'; '.join(summary['cost_notes'])})" if summary.get("cost_notes") else "",
    )


def purge(root: Path, retention_days: int, today: dt.date | None = None) -> int:
    """Delete ``root/YYYY/MM/DD`` older than ``retention_days`` (and emptied parents)."""
    today = today or dt.datetime.now(dt.UTC).date()
    cutoff = today - dt.timedelta(days=retention_days)
    removed = 0
    for year in numbered_dirs(root, 4):
        for month in numbered_dirs(year, 2):
            for day in numbered_dirs(month, 2):
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


def numbered_dirs(path: Path, digits: int) -> list[Path]:
    try:
        entries = list(path.iterdir())
    except OSError:
        return []
    return sorted(p for p in entries if p.is_dir() and len(p.name) == digits and p.name.isdigit())
