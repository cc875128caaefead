"""Reading records back: event logs, summaries (rebuilt from a partial log when needed),
and the text of ``agi-bridge calls`` and ``agi-bridge show``."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from agi_bridge.config import Price
from agi_bridge.records.ledger import Ledger
from agi_bridge.records.store import EVENTS_FILE, SUMMARY_FILE, WAV_FILE, numbered_dirs

_DIR_RE = re.compile(r"^(\d{6})_(.+)$")


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
    for year in reversed(numbered_dirs(root, 4)):
        for month in reversed(numbered_dirs(year, 2)):
            for day in reversed(numbered_dirs(month, 2)):
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
    notes = summary.get("cost_notes") or []
    if isinstance(cost, int | float):
        text = f"${cost:.4f} (prices of {summary.get('price')})"
        if notes:
            text += f"; {'; '.join(notes)}"
    else:
        text = "none" + (f" ({'; '.join(notes)})" if notes else " (no price for this model)")
    lines.append("cost     " + text)
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
    if kind == "caller_idle":
        return "caller  ... silent for the idle timeout"
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
