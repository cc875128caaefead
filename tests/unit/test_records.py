"""Call records without sockets: usage -> tokens -> cost, the stereo WAV timeline,
retention, partial logs, and the `calls` / `show` commands."""

from __future__ import annotations

import datetime as dt
import json
import logging
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agi_bridge.cli import main
from agi_bridge.config import DEFAULT_PRICES, Price, load_text
from agi_bridge.errors import ConfigError
from agi_bridge.records import (
    EVENTS_FILE,
    SUMMARY_FILE,
    Ledger,
    WavRecorder,
    call_dir,
    cost_usd,
    find_call,
    load_summary,
    price_for,
    purge,
    read_events,
    recent_summaries,
    replay,
    show_call,
    token_kinds,
)

FRAME = 160  # samples per 20 ms


def sim_usage(
    in_audio: int, in_text: int, cached_audio: int, cached_text: int, out_audio: int, out_text: int
) -> dict[str, object]:
    """The GA usage shape (as the simulator and the service send it)."""
    return {
        "total_tokens": in_audio + in_text + out_audio + out_text,
        "input_tokens": in_audio + in_text,
        "output_tokens": out_audio + out_text,
        "input_token_details": {
            "text_tokens": in_text,
            "audio_tokens": in_audio,
            "image_tokens": 0,
            "cached_tokens": cached_audio + cached_text,
            "cached_tokens_details": {"text_tokens": cached_text, "audio_tokens": cached_audio},
        },
        "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
    }


# ------------------------------------------------------------------ tokens and cost


def test_token_kinds_split_cached_from_uncached() -> None:
    kinds = token_kinds(sim_usage(1000, 400, 300, 100, 2000, 50))
    assert kinds == {
        "audio_in": 700,
        "cached_audio_in": 300,
        "text_in": 300,
        "cached_text_in": 100,
        "audio_out": 2000,
        "text_out": 50,
    }


def test_token_kinds_without_cached_split_counts_cached_as_text_first() -> None:
    usage = {
        "input_token_details": {"audio_tokens": 100, "text_tokens": 30, "cached_tokens": 50},
        "output_token_details": {"audio_tokens": 7},
    }
    kinds = token_kinds(usage)
    assert kinds["cached_text_in"] == 30 and kinds["text_in"] == 0
    assert kinds["cached_audio_in"] == 20 and kinds["audio_in"] == 80
    assert kinds["audio_out"] == 7 and kinds["text_out"] == 0
    assert token_kinds({}) == dict.fromkeys(kinds, 0)


def test_cost_uses_the_price_per_million_tokens() -> None:
    price = DEFAULT_PRICES["gpt-realtime"]
    one_million_each = dict.fromkeys(
        ("audio_in", "cached_audio_in", "text_in", "cached_text_in", "audio_out", "text_out"),
        1_000_000,
    )
    assert cost_usd(one_million_each, price) == pytest.approx(32 + 0.4 + 4 + 0.4 + 64 + 16)
    assert cost_usd({"audio_out": 1500}, price) == pytest.approx(1500 * 64 / 1e6)


def test_price_lookup_by_exact_name_only() -> None:
    prices = DEFAULT_PRICES
    assert price_for(prices, "gpt-realtime")[0] == "gpt-realtime"  # type: ignore[index]
    # a dated snapshot maps explicitly (same_as), never by prefix
    assert price_for(prices, "gpt-realtime-2025-08-28")[0] == "gpt-realtime"  # type: ignore[index]
    # its own entry, never the gpt-realtime rate by prefix; an unknown name: no price
    assert price_for(prices, "gpt-realtime-2.1-mini")[0] == "gpt-realtime-2.1-mini"  # type: ignore[index]
    assert price_for(prices, "gpt-realtime-3-mini") is None
    assert price_for(prices, "gpt-realtime-mini-2025-10-06") is None
    assert price_for(prices, "my-azure-deployment") is None
    assert price_for({"x": Price(same_as="missing")}, "x") is None


def test_config_prices_extend_the_defaults_and_reject_negatives() -> None:
    cfg = load_text("prices:\n  my-deployment: {audio_in: 30, audio_out: 60}\n", "p.yaml")
    assert set(cfg.prices) == set(DEFAULT_PRICES) | {"my-deployment"}
    assert cfg.prices["my-deployment"] == Price(audio_in=30.0, audio_out=60.0)
    cfg = load_text("prices:\n  gpt-realtime: {audio_in: 1}\n")
    assert cfg.prices["gpt-realtime"].audio_in == 1.0
    with pytest.raises(ConfigError, match=r"p\.yaml:3 prices\.x\.text_out: must not be negative"):
        load_text("prices:\n  x:\n    text_out: -2\n", "p.yaml")
    with pytest.raises(ConfigError, match=r"p\.yaml:3 prices\.x\.same_as: no price entry 'y'"):
        load_text("prices:\n  x:\n    same_as: y\n", "p.yaml")


def test_config_records_webhook_and_http_keys() -> None:
    cfg = load_text(
        "listen: {http: ''}\nrecords: {dir: /tmp/r, retention_days: 7, wav: true}\n"
        "webhook: {url: 'https://example.test/hook', retries: 1}\n"
    )
    assert cfg.listen.http == ""
    assert (cfg.records.dir, cfg.records.retention_days, cfg.records.wav) == ("/tmp/r", 7, True)
    assert cfg.webhook.url == "https://example.test/hook" and cfg.webhook.retries == 1
    assert load_text("").listen.http == "127.0.0.1:9091"
    with pytest.raises(ConfigError, match=r"listen\.http: expected HOST:PORT"):
        load_text("listen: {http: nope}")
    with pytest.raises(ConfigError, match=r"webhook\.url: expected an http"):
        load_text("webhook: {url: 'ftp://x'}")
    with pytest.raises(ConfigError, match=r"records\.retention_days: must not be negative"):
        load_text("records: {retention_days: -1}")


def test_ledger_folds_events_into_a_summary() -> None:
    ledger = Ledger(DEFAULT_PRICES, "gpt-realtime")
    ledger.add("start", {"call_id": "c1", "caller": "555", "agent": "default"}, 0.0)
    ledger.add("response_done", {"usage": sim_usage(100, 50, 0, 0, 400, 10)}, 1.0)
    ledger.add("speech_stopped", {}, 2.0)
    ledger.add("turn_latency", {"ms": 640.0}, 2.6)
    ledger.add("agent_transcript", {"text": "hi"}, 2.7)
    ledger.add("response_done", {"usage": sim_usage(200, 60, 100, 50, 300, 5)}, 3.0)
    ledger.add("tool_result", {"name": "send_dtmf", "result": {"ok": True}}, 3.1)
    ledger.add("dtmf_sent", {"digit": "1"}, 3.2)
    ledger.add("dtmf_sent", {"digit": "#"}, 3.3)
    ledger.add("realtime_error", {"code": "x", "message": "m"}, 3.4)
    ledger.add("end", {"reason": "caller_hangup", "detail": "hangup frame"}, 4.0)
    s = ledger.summary()
    assert s["tokens"] == {
        "audio_in": 200,
        "cached_audio_in": 100,
        "text_in": 60,
        "cached_text_in": 50,
        "audio_out": 700,
        "text_out": 15,
    }
    expected = (200 * 32 + 100 * 0.4 + 60 * 4 + 50 * 0.4 + 700 * 64 + 15 * 16) / 1e6
    assert s["cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert s["latency_ms"] == {"turns": [640.0], "p50": 640.0, "max": 640.0}
    assert s["turns"] == {"caller": 1, "agent": 1} and s["responses"] == 2
    assert s["tool_calls"] == [{"name": "send_dtmf", "ok": True}]
    assert (s["dtmf_sent"], s["errors"], s["outcome"]) == ("1#", ["x"], "caller_hangup")
    assert s["duration_s"] == 4.0 and s["price"] == "gpt-realtime"


def test_ledger_without_a_price_gives_no_cost() -> None:
    ledger = Ledger(DEFAULT_PRICES, "unknown-model")
    ledger.add("response_done", {"usage": sim_usage(1, 1, 0, 0, 1, 1)}, 0.5)
    assert ledger.summary()["cost_usd"] is None


# ------------------------------------------------------------------------- recording


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def frame(value: int) -> bytes:
    return np.full(FRAME, value, dtype="<i2").tobytes()


def read_wav(path: Path) -> tuple[wave._wave_params, np.ndarray]:
    with wave.open(str(path)) as w:
        params = w.getparams()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return params, data.reshape(-1, 2)


def frame_values(channel: np.ndarray) -> list[int]:
    """The value of each 20 ms frame of a channel (frames are constant in these tests)."""
    return [int(channel[i * FRAME]) for i in range(len(channel) // FRAME)]


def test_wav_aligns_caller_frames_to_the_playout_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    rec = WavRecorder(tmp_path / "a.wav", clock=clock)
    origin = clock.t
    for n in range(100):
        clock.t = origin + n * 0.02
        rec.agent_frame(frame(1000 + n), 0)
        # caller frame n arrives 7 ms after tick n+1 would be... i.e. with network delay
        clock.t = origin + n * 0.02 + 0.027
        rec.caller_audio(frame(n + 1))
    rec.close()
    params, data = read_wav(tmp_path / "a.wav")
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, 8000)
    assert params.nframes == 100 * FRAME
    assert frame_values(data[:, 1]) == [1000 + n for n in range(100)]
    assert frame_values(data[:, 0]) == [n + 1 for n in range(100)]


def test_wav_caller_bursts_stay_contiguous_and_gaps_become_silence(tmp_path: Path) -> None:
    clock = FakeClock()
    rec = WavRecorder(tmp_path / "b.wav", clock=clock)
    origin = clock.t
    caller_at: dict[int, int] = {}  # caller frame value -> frame index it was captured in
    sent = 0
    for n in range(200):
        clock.t = origin + n * 0.02
        rec.agent_frame(frame(0), 0)
        # frames 0..49: delivered in bursts of 3 every 60 ms; then 1 s with nothing;
        # from tick 100 on, one per tick again
        if n < 50 and n % 3 == 2:
            clock.t += 0.005
            for _ in range(3):
                sent += 1
                caller_at[sent] = sent - 1
                rec.caller_audio(frame(sent))
        elif n >= 100:
            clock.t += 0.005
            sent += 1
            caller_at[sent] = n - 1 + 1  # captured during the 20 ms before this arrival
            rec.caller_audio(frame(sent))
    rec.close()
    _, data = read_wav(tmp_path / "b.wav")
    left = frame_values(data[:, 0])
    for value, index in caller_at.items():
        assert abs(left.index(value) - index) <= 1, f"caller frame {value} misplaced"
    # the silence while the caller sent nothing is there, and nothing was dropped
    assert sorted(v for v in left if v) == sorted(caller_at)
    assert left[60:95] == [0] * 35


def test_wav_fills_frames_the_pacer_skipped_with_silence(tmp_path: Path) -> None:
    clock = FakeClock()
    rec = WavRecorder(tmp_path / "c.wav", clock=clock)
    for _ in range(10):
        rec.agent_frame(frame(7), 0)
    rec.agent_frame(frame(9), 6)  # the pacer re-anchored, skipping 6 frames
    rec.close()
    _, data = read_wav(tmp_path / "c.wav")
    assert frame_values(data[:, 1]) == [7] * 10 + [0] * 6 + [9]


def test_wav_is_readable_before_close_up_to_the_last_flush(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "d.wav"
    rec = WavRecorder(path, clock=clock)
    origin = clock.t
    for n in range(WavRecorder.FLUSH_TICKS * 2 + 10):
        clock.t = origin + n * 0.02
        rec.agent_frame(frame(3), 0)
        rec.caller_audio(frame(4))
    # as if the process were killed here: no close()
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 2
        assert w.getnframes() >= WavRecorder.FLUSH_TICKS * 2 * FRAME - FRAME
        assert len(w.readframes(w.getnframes())) == w.getnframes() * 4
    rec.close()


# ------------------------------------------------------------------ files on disk


def write_call(
    root: Path, when: dt.datetime, call_id: str, events: list[dict[str, object]], *, torn: str = ""
) -> Path:
    path = call_dir(root, when, call_id)
    path.mkdir(parents=True)
    with open(path / EVENTS_FILE, "w") as f:
        for ev in events:
            f.write(json.dumps(ev) + "\n")
        f.write(torn)
    return path


START = {
    "t": 0.0,
    "time": "2026-11-22T14:32:05.000+00:00",
    "event": "start",
    "call_id": "11111111-aaaa-4bbb-8ccc-000000000001",
    "agent": "default",
    "caller": "5551234",
    "dnid": "100",
    "channel": "PJSIP/alice-1",
    "model": "gpt-realtime",
}


def test_partial_log_gives_a_summary_and_a_transcript(tmp_path: Path) -> None:
    when = dt.datetime(2026, 11, 22, 14, 32, 5, tzinfo=dt.UTC)
    events = [
        START,
        {"t": 1.2, "event": "agent_transcript", "text": "Hello, thanks for calling."},
        {"t": 1.3, "event": "response_done", "usage": sim_usage(50, 100, 0, 0, 60, 8)},
        {"t": 3.0, "event": "speech_stopped", "item_id": "i1"},
        {"t": 3.5, "event": "caller_transcript", "text": "order status"},
        {"t": 3.55, "event": "turn_latency", "ms": 550.0},
        {"t": 9.6, "event": "caller_idle"},
    ]
    path = write_call(tmp_path, when, str(START["call_id"]), events, torn='{"t": 10.0, "ev')
    assert path.relative_to(tmp_path).parts[:3] == ("2026", "11", "22")
    assert path.name.startswith("143205_")
    assert len(read_events(path / EVENTS_FILE)) == len(events)  # the torn line is skipped
    summary = load_summary(path, DEFAULT_PRICES)
    assert summary["outcome"] == "unfinished"
    assert summary["caller"] == "5551234" and summary["model"] == "gpt-realtime"
    assert summary["latency_ms"]["turns"] == [550.0]
    assert summary["cost_usd"] == pytest.approx((50 * 32 + 100 * 4 + 60 * 64 + 8 * 16) / 1e6)
    text = show_call(tmp_path, "11111111", DEFAULT_PRICES)
    assert text is not None
    assert "agent : Hello, thanks for calling." in text
    assert "caller: order status" in text
    assert "550 ms" in text and "did not finish" in text
    assert "caller  ... silent for the idle timeout" in text
    assert replay(read_events(path / EVENTS_FILE), DEFAULT_PRICES).summary()["responses"] == 1


def test_find_call_by_id_or_unique_prefix(tmp_path: Path) -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    a = write_call(tmp_path, when, "abc-1", [START])
    write_call(tmp_path, when, "abc-2", [START])
    assert find_call(tmp_path, "abc-1") == a
    assert find_call(tmp_path, "abc") is None  # ambiguous
    assert find_call(tmp_path, "zzz") is None


@pytest.fixture
def keep_logging() -> Iterator[None]:
    """main() configures the root logger; put it back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("keep_logging")
def test_calls_and_show_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i, day in enumerate((20, 21, 22)):
        when = dt.datetime(2026, 11, day, 10, 0, i, tzinfo=dt.UTC)
        path = write_call(tmp_path, when, f"call-{day}", [{**START, "call_id": f"call-{day}"}])
        summary = {
            "call_id": f"call-{day}",
            "started_at": when.isoformat(),
            "caller": f"55500{day}",
            "agent": "sales",
            "duration_s": 12.5,
            "outcome": "agent_hangup",
            "cost_usd": 0.0123,
        }
        (path / SUMMARY_FILE).write_text(json.dumps(summary))
    assert main(["calls", "--dir", str(tmp_path), "--limit", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["TIME", "(UTC)", "CALL"]
    assert [line.split()[2] for line in out[1:]] == ["call-22", "call-21"]  # newest first
    assert "5550022" in out[1] and "sales" in out[1] and "$0.0123" in out[1]
    assert "agent_hangup" in out[1] and "12.5s" in out[1]
    assert main(["show", "call-21", "--dir", str(tmp_path)]) == 0
    assert "call call-21" in capsys.readouterr().out
    assert main(["show", "nope", "--dir", str(tmp_path)]) == 1
    assert [s["call_id"] for s in recent_summaries(tmp_path, DEFAULT_PRICES, 10)] == [
        "call-22",
        "call-21",
        "call-20",
    ]


def test_retention_deletes_old_day_directories(tmp_path: Path) -> None:
    for date in ("2026/01/05", "2026/02/27", "2026/03/01", "2025/12/31"):
        (tmp_path / date / "100000_x").mkdir(parents=True)
    (tmp_path / "notes").mkdir()  # not a year: left alone
    removed = purge(tmp_path, 30, dt.date(2026, 3, 1))
    assert removed == 2
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("*/*/*")) == [
        "2026/02/27",
        "2026/03/01",
    ]
    assert not (tmp_path / "2025").exists() and not (tmp_path / "2026" / "01").exists()
    assert (tmp_path / "notes").exists()


@pytest.mark.usefixtures("keep_logging")
def test_json_log_lines_carry_the_call_id(capsys: pytest.CaptureFixture[str]) -> None:
    from agi_bridge.cli import setup_logging

    setup_logging("INFO", "json")
    call_log = logging.LoggerAdapter(logging.getLogger("agi_bridge.call"), {"call_id": "c-42"})
    call_log.info("caller: %s", "hello")
    logging.getLogger("agi_bridge.app").warning("no call here")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["call_id"], r["level"], r["message"]) for r in lines] == [
        ("c-42", "INFO", "caller: hello"),
        ("-", "WARNING", "no call here"),
    ]
    assert all({"time", "logger"} <= set(r) for r in lines)


@pytest.mark.usefixtures("keep_logging")
def test_a_worker_says_which_it_is_in_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    from agi_bridge.cli import setup_logging

    setup_logging("INFO", "json", worker=1)
    logging.getLogger("agi_bridge.app").info("ready")
    setup_logging("INFO", "text", worker=0)
    logging.getLogger("agi_bridge.app").info("ready")
    json_line, text_line = capsys.readouterr().err.splitlines()
    assert json.loads(json_line)["worker"] == 1
    assert " INFO    w0 [-] agi_bridge.app: ready" in text_line


def _ledger(start: dict[str, object]) -> Ledger:
    prices = {
        **DEFAULT_PRICES,
        "asr-tokens": Price(audio_in=3.0, text_in=1.0, text_out=5.0),
        "asr-minutes": Price(audio_minute=0.006),
        "live-1": Price(audio_minute=0.05),
    }
    ledger = Ledger(prices)
    ledger.add("start", {"call_id": "c", **start}, 0.0)
    return ledger


def test_transcription_usage_is_priced_on_its_own_entry() -> None:
    ledger = _ledger({"model": "gpt-realtime", "transcription_model": "asr-tokens"})
    usage = {"kind": "tokens", "audio_tokens": 1_000_000, "text_tokens": 0, "output_tokens": 0}
    ledger.add("transcription_usage", {"item_id": "i1", "usage": usage}, 1.0)
    ledger.add("caller_transcript", {"item_id": "i1", "text": "hi"}, 2.0)
    parts, notes = ledger.costs()
    assert parts == {"realtime": 0.0, "transcription": 3.0, "session": None}
    assert notes == [] and ledger.cost_usd == 3.0
    summary = ledger.summary()
    assert summary["transcription"] == {
        "model": "asr-tokens",
        "tokens": {"audio_in": 1_000_000},
        "seconds": 0.0,
    }
    minutes = _ledger({"model": "gpt-realtime", "transcription_model": "asr-minutes"})
    minutes.add("transcription_usage", {"usage": {"kind": "duration", "seconds": 120.0}}, 1.0)
    assert minutes.costs()[0]["transcription"] == 0.012


def test_unknown_model_has_no_cost_and_says_so() -> None:
    ledger = _ledger({"model": "gpt-realtime-3-mini", "transcription_model": "mystery-asr"})
    ledger.add("response_done", {"usage": {"input_token_details": {"audio_tokens": 100}}}, 1.0)
    ledger.add("transcription_usage", {"usage": {"kind": "duration", "seconds": 3.0}}, 1.0)
    summary = ledger.summary()
    assert summary["cost_usd"] is None and summary["price"] is None
    assert summary["cost_notes"] == [
        "no price for model gpt-realtime-3-mini",
        "no price for model mystery-asr",
    ]


def test_simulator_calls_record_no_cost() -> None:
    ledger = _ledger({"model": "gpt-realtime", "provider": "simulator"})
    ledger.add("response_done", {"usage": {"input_token_details": {"audio_tokens": 100}}}, 1.0)
    summary = ledger.summary()
    assert summary["provider"] == "simulator"
    assert summary["cost_usd"] is None and summary["price"] is None
    assert summary["cost_notes"] == ["answered by the bundled simulator: no cost"]
    assert summary["tokens"]["audio_in"] == 100  # usage is still counted


def test_per_minute_session_billing_uses_cumulative_seconds() -> None:
    ledger = _ledger({"model": "live-1", "provider": "gpt-live"})
    ledger.add("session_usage", {"seconds": 30.0}, 30.0)
    ledger.add("session_usage", {"seconds": 90.0}, 90.0)  # a total, not an increment
    assert ledger.costs()[0]["session"] == 0.075
    assert ledger.summary()["session_seconds"] == 90.0
