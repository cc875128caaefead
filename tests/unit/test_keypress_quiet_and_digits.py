"""Sans-I/O policies: quiet after a keypress, and the digit collector of collect_digits."""

from __future__ import annotations

import pytest

from agi_bridge.config import load_text
from agi_bridge.digits import DigitCollector
from agi_bridge.errors import ConfigError
from agi_bridge.keypress_quiet import KeypressQuiet


def test_quiet_until_the_callee_speaks() -> None:
    q = KeypressQuiet(timeout_s=4.0)
    assert q.may_respond(0.0) and q.deadline() is None
    q.on_dtmf_sent(10.0)
    assert not q.may_respond(10.1) and q.quiet
    assert q.deadline() == 14.0
    q.on_callee_speech()  # the new menu (or a person) finished a turn
    assert q.may_respond(10.2) and not q.quiet


def test_quiet_ends_after_the_timeout_and_a_later_digit_restarts_it() -> None:
    q = KeypressQuiet(timeout_s=4.0)
    q.on_dtmf_sent(10.0)
    q.on_dtmf_sent(12.0)  # "12345#": the wait starts at the last digit
    assert not q.may_respond(15.9)
    assert q.may_respond(16.0)
    assert q.may_respond(16.1) and q.deadline() is None  # and it stays over


def test_quiet_off() -> None:
    q = KeypressQuiet(timeout_s=0)
    q.on_dtmf_sent(1.0)
    assert q.may_respond(1.0)


def test_quiet_config_key() -> None:
    cfg = load_text("agents:\n  a:\n    quiet_after_dtmf_s: 2.5\ndefault_agent: a\n", "c.yaml")
    assert cfg.agents["a"].quiet_after_dtmf_s == 2.5
    assert load_text("", "c.yaml").agents["default"].quiet_after_dtmf_s == 4.0
    with pytest.raises(ConfigError, match=r"c\.yaml:3 agents\.a\.quiet_after_dtmf_s: must not"):
        load_text("agents:\n  a:\n    quiet_after_dtmf_s: -1\ndefault_agent: a\n", "c.yaml")


def test_collect_until_the_terminator() -> None:
    d = DigitCollector()
    d.start(0.0, max_digits=8, terminator="#", timeout_s=10)
    assert d.active
    assert [d.feed(k, 1.0 + i) for i, k in enumerate("12#")] == [True, True, True]
    assert not d.active
    assert not d.feed("5", 5.0)  # after the end: an ordinary caller digit again
    done = d.take()
    assert done is not None and (done.digits, done.ended) == ("12", "terminator")
    assert d.take() is None


def test_collect_max_digits_and_timeouts() -> None:
    d = DigitCollector()
    d.start(0.0, max_digits=3, terminator="", timeout_s=10, inter_digit_s=2)
    for i, k in enumerate("123"):
        d.feed(k, float(i))
    done = d.take()
    assert done is not None and (done.digits, done.ended) == ("123", "complete")

    d.start(0.0, max_digits=4, timeout_s=10, inter_digit_s=2)
    assert d.next_deadline() == 10.0
    assert not d.expired(9.9) and d.expired(10.0)
    done = d.take()
    assert done is not None and (done.digits, done.ended) == ("", "timeout")

    d.start(0.0, max_digits=4, timeout_s=10, inter_digit_s=2)
    d.feed("9", 1.0)
    assert d.next_deadline() == 3.0
    assert not d.feed("8", 3.5)  # too late: the collection timed out
    done = d.take()
    assert done is not None and (done.digits, done.ended) == ("9", "timeout")


def test_collect_argument_errors() -> None:
    d = DigitCollector()
    with pytest.raises(ValueError, match=r"max_digits must be 1\.\.32"):
        d.start(0.0, max_digits=0)
    with pytest.raises(ValueError, match="terminator"):
        d.start(0.0, max_digits=4, terminator="5")
    d.start(0.0, max_digits=4)
    with pytest.raises(ValueError, match="already running"):
        d.start(0.0, max_digits=4)


def test_collect_digits_needs_a_webhook() -> None:
    base = "default_agent: a\nagents:\n  a:\n    tools: [collect_digits]\n"
    with pytest.raises(ConfigError, match=r"c\.yaml:4 agents\.a\.tools: collect_digits needs"):
        load_text(base, "c.yaml")
    with pytest.raises(ConfigError, match=r"agents\.a\.collect_digits_webhook: collect_digits"):
        load_text(base + "    collect_digits_webhook: nope\n", "c.yaml")
    ok = load_text(
        base
        + "    collect_digits_webhook: pins\n"
        + "tools:\n  pins: {url: 'http://127.0.0.1:9/pins'}\n",
        "c.yaml",
    )
    assert ok.agents["a"].collect_digits_webhook == "pins"
