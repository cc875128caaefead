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

from agi_bridge.records.history import (
    find_call,
    format_calls,
    format_transcript,
    iter_call_dirs,
    load_summary,
    read_events,
    recent_summaries,
    replay,
    show_call,
)
from agi_bridge.records.ledger import TOKEN_KINDS, Ledger, cost_usd, price_for, token_kinds
from agi_bridge.records.store import (
    EVENTS_FILE,
    SUMMARY_FILE,
    WAV_FILE,
    CallRecord,
    CallRecords,
    call_dir,
    purge,
)
from agi_bridge.records.wav import WavRecorder

__all__ = [
    "EVENTS_FILE",
    "SUMMARY_FILE",
    "TOKEN_KINDS",
    "WAV_FILE",
    "CallRecord",
    "CallRecords",
    "Ledger",
    "WavRecorder",
    "call_dir",
    "cost_usd",
    "find_call",
    "format_calls",
    "format_transcript",
    "iter_call_dirs",
    "load_summary",
    "price_for",
    "purge",
    "read_events",
    "recent_summaries",
    "replay",
    "show_call",
    "token_kinds",
]
