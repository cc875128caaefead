"""agi-bridge test: suite files, the stuck/dead-air monitor, expectation checks, reports.

The runner against a real Asterisk is in tests/e2e/test_ivr_suite.py."""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from agi_bridge.errors import ConfigError
from agi_bridge.ivrtest import (
    CaseVerdict,
    Evidence,
    Expect,
    Monitor,
    check,
    junit_xml,
    load_suite_text,
    suite_json,
)
from agi_bridge.prompt_context import parse_var, prompt_context, substitute

SUITE = """\
name: demo
concurrency: 2
defaults:
  agent: ivr
  destination: Local/500@agi-bridge-ivr-demo
  expect: {max_duration_s: 60}
cases:
  - name: one
    goal: Enter {number}.
    variables: {number: 0123}
    expect:
      digits: "21#"
      prompts_in_order: ["press 2", "enter"]
  - name: two
    destination: "486"
    goal: Reach sales.
    expect: {outcome: [busy, no_answer]}
"""


def test_suite_loads_with_defaults_merged() -> None:
    suite = load_suite_text(SUITE, "s.yaml")
    one, two = suite.cases
    assert (suite.name, suite.concurrency, suite.source) == ("demo", 2, "s.yaml")
    assert (one.agent, one.destination) == ("ivr", "Local/500@agi-bridge-ivr-demo")
    assert dict(one.variables) == {"number": "0123"}  # as written, not an octal integer
    assert one.expect.digits == "21#" and one.expect.max_duration_s == 60  # merged key by key
    assert two.destination == "486" and two.expect.outcome == ("busy", "no_answer")
    assert (one.dead_air_s, one.stuck_repeats) == (30.0, 3)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (('digits: "21#"', 'digits: "21x"'), "line 12 cases[0].expect.digits: expected DTMF"),
        (('"press 2"', '"press (2"'), "line 13 cases[0].expect.prompts_in_order[0]: bad regular"),
        (("[busy, no_answer]", "[busy, nope]"), "cases[1].expect.outcome[1]: unknown outcome"),
        (("  - name: two", "  - name: one"), "line 14 cases[1].name: name 'one' already used"),
        (("    goal: Reach sales.\n", ""), "cases[1]: a case needs a goal"),
        (("concurrency: 2", "concurrency: 0"), "line 2 concurrency: must be >= 1"),
        (("expect: {max", "expekt: {max"), "line 6 defaults.expekt: unknown key"),
        (("    variables: {number: 0123}", "    variables: [1]"), "line 10 cases[0].variables"),
    ],
)
def test_suite_errors_name_file_key_and_line(change: tuple[str, str], where: str) -> None:
    text = SUITE.replace(*change)
    assert text != SUITE
    with pytest.raises(ConfigError) as info:
        load_suite_text(text, "s.yaml")
    message = str(info.value)
    assert message.startswith("s.yaml:"), message
    file_line, _, rest = message.partition(" ")
    if where.startswith("line "):
        line, _, where = where[5:].partition(" ")
        assert file_line == f"s.yaml:{line}", message
    assert rest.startswith(where), message


def test_suite_without_cases_or_not_yaml() -> None:
    with pytest.raises(ConfigError, match=r"s\.yaml: the suite is empty"):
        load_suite_text("", "s.yaml")
    with pytest.raises(ConfigError, match=r"s\.yaml:1 cases: the suite needs at least one case"):
        load_suite_text("cases: []\n", "s.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_suite_text("cases: [\n", "s.yaml")


# ------------------------------------------------------------------------- monitor


def test_the_same_prompt_three_times_is_stuck() -> None:
    m = Monitor(dead_air_s=0, stuck_repeats=3)
    m.answered(0.5)
    assert m.callee_said(2.0, "Press 1 for sales. Press 2 for support.") is None
    assert m.callee_said(9.0, "Sorry, that option is invalid.") is None
    assert m.callee_said(12.0, "press 1 for sales, press 2 for support") is None  # normalized
    stop = m.callee_said(20.0, "Press 1 for sales. Press 2 for support!")
    assert stop is not None and stop.outcome == "stuck"
    assert "heard 3 times (at 2.0, 12.0, 20.0 s)" in stop.detail


def test_different_prompts_are_not_stuck() -> None:
    m = Monitor(dead_air_s=0, stuck_repeats=3)
    for i, text in enumerate(["Main menu: press 2", "Press 1 for number", "Enter the number"]):
        m.key_sent(i + 0.5)
        assert m.callee_said(i + 1.0, text) is None
    assert m.stop is None


def test_keypresses_that_lead_to_nothing_new_are_stuck() -> None:
    m = Monitor(dead_air_s=0, stuck_repeats=3)
    m.callee_said(1.0, "Press 1 for sales")
    m.key_sent(2.0)
    assert m.callee_said(3.0, "That option is invalid") is None  # new: the menu moved
    m.key_sent(4.0)
    assert m.callee_said(5.0, "Press 1 for sales") is None  # heard before: 1
    m.key_sent(6.0)
    stop = m.callee_said(7.0, "That option is invalid")  # heard before: 2, each only twice
    assert stop is not None and stop.outcome == "stuck"
    assert "2 keypresses in a row led to no new prompt" in stop.detail


def test_dead_air_and_the_longest_silence() -> None:
    m = Monitor(dead_air_s=5.0, stuck_repeats=3)
    assert m.tick(100.0) is None  # not answered: nothing to judge
    m.answered(1.0)
    m.speech_started(2.0)
    assert m.tick(10.0) is None  # the callee is talking
    m.speech_stopped(11.0)
    assert m.tick(15.9) is None
    m.speech_started(16.0)  # a 5 s gap, just under
    m.speech_stopped(17.0)
    stop = m.tick(22.5)
    assert stop is not None and stop.outcome == "dead_air"
    assert stop.detail == "no callee speech for 5.5 s (since 17.0 s)"
    m.finish(23.0)
    assert m.longest_silence == (17.0, 23.0)


# ------------------------------------------------------------------------- checks


def evidence(**kw: object) -> Evidence:
    base: dict[str, object] = {
        "outcome": "goal_achieved",
        "detail": "goal achieved: done",
        "duration_s": 30.0,
        "wire_digits": [{"digit": "2", "t": 5.0}, {"digit": "1", "t": 9.0}],
        "callee": [(4.0, "Press 2 for messages"), (8.0, "Press 1 for number"), (12.0, "Bye")],
        "longest_silence": (12.0, 15.0),
    }
    base.update(kw)
    return Evidence(**base)  # type: ignore[arg-type]


def test_every_expectation_met_passes() -> None:
    expect = Expect(
        outcome="goal_achieved",
        digits="21",
        transcript=("press 1 for NUMBER",),
        not_transcript=("invalid",),
        prompts_in_order=("press 2", "press 1", "bye"),
        max_duration_s=31,
        max_silence_s=3.5,
    )
    assert check(expect, evidence()) == []
    assert check(Expect(digits_match=r"2\d"), evidence()) == []


def test_each_failed_expectation_with_its_evidence() -> None:
    expect = Expect(
        outcome=("goal_achieved",),
        digits="22",
        transcript=("goodbye",),
        not_transcript=("press 1",),
        prompts_in_order=("press 1", "press 2"),
        max_duration_s=10,
        max_silence_s=2,
    )
    failures = {f.expectation: f for f in check(expect, evidence(outcome="stuck"))}
    assert list(failures) == [
        "expect.outcome",
        "expect.digits",
        "expect.transcript[0]",
        "expect.not_transcript[0]",
        "expect.prompts_in_order[1]",
        "expect.max_duration_s",
        "expect.max_silence_s",
    ]
    assert failures["expect.outcome"].message == "expected goal_achieved, got stuck"
    assert failures["expect.digits"].message == "expected '22' on the wire, got '21'"
    assert failures["expect.digits"].evidence == (
        "digits on the wire '21' (2 at 5.0 s, 1 at 9.0 s)"
    )
    assert failures["expect.not_transcript[0]"].message == "/press 1/ was heard at 8.0 s"
    assert failures["expect.prompts_in_order[1]"].message == (
        "prompt 2 of 2 /press 2/ not heard after /press 1/ at 8.0 s"
    )
    assert "'Bye'" in failures["expect.prompts_in_order[1]"].evidence
    assert failures["expect.max_silence_s"].message.startswith(
        "the callee was silent for 3.0 s (from 12.0 to 15.0 s)"
    )


def test_no_outcome_expectation_means_goal_achieved() -> None:
    failures = check(Expect(), evidence(outcome="goal_not_achieved", detail="no such option"))
    assert [f.message for f in failures] == ["expected goal_achieved, got goal_not_achieved"]
    assert failures[0].evidence.startswith("no such option; callee: 4.0 s")


# ------------------------------------------------------------------------- reports


def verdicts() -> list[CaseVerdict]:
    bad = evidence(wire_digits=[])
    return [
        CaseVerdict("ok", True, "goal_achieved", "done", 12.5, evidence=evidence()),
        CaseVerdict(
            "bad",
            False,
            "goal_achieved",
            "done",
            20.0,
            failures=check(Expect(digits="21"), bad),
            evidence=bad,
            artifacts="/tmp/x",
        ),
        CaseVerdict("broken", False, "failed", "AMI down", 1.0, error="could not run"),
    ]


def test_junit_xml_structure() -> None:
    text = junit_xml("demo", verdicts(), 33.0, dt.datetime(2026, 1, 2, 3, 4, 5))
    root = ET.fromstring(text.encode())
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert root.tag == "testsuites"
    (suite,) = root
    assert suite.tag == "testsuite"
    assert {k: suite.get(k) for k in ("name", "tests", "failures", "errors", "skipped")} == {
        "name": "demo",
        "tests": "3",
        "failures": "1",
        "errors": "1",
        "skipped": "0",
    }
    assert suite.get("timestamp") == "2026-01-02T03:04:05"
    ok, bad, broken = suite.findall("testcase")
    assert (ok.get("name"), ok.get("classname"), ok.get("time")) == (
        "ok",
        "agi-bridge.demo",
        "12.500",
    )
    assert ok.find("failure") is None and ok.find("error") is None
    failure = bad.find("failure")
    assert failure is not None
    assert failure.get("message") == "expect.digits: expected '21' on the wire, got ''"
    assert failure.get("type") == "expect.digits"
    assert failure.text == "no digits on the wire"
    out = bad.find("system-out")
    assert out is not None and out.text is not None
    assert "callee: Press 2 for messages" in out.text and "artifacts: /tmp/x" in out.text
    error = broken.find("error")
    assert error is not None and error.get("message") == "could not run"


def test_json_report() -> None:
    data = suite_json("demo", verdicts(), 33.0)
    assert (data["passed"], data["cases"], data["failures"], data["errors"]) == (False, 3, 1, 1)
    results = data["results"]
    assert results[0]["digits_on_wire"] == "21"
    assert results[1]["failures"][0]["expectation"] == "expect.digits"
    json.dumps(data)  # serializable


# --------------------------------------------------------------- prompt context


def test_substitution_is_safe() -> None:
    values = prompt_context("5551000", "5559999", {"name": "Ann", "evil": "{dnid}"})
    template = "Hi {name} from {caller_id} to {dnid}; {unknown} {0} {name.__class__} {evil} {}"
    assert substitute(template, values) == (
        "Hi Ann from 5551000 to 5559999; {unknown} {0} {name.__class__} {dnid} {}"
    )
    assert substitute('JSON: {"a": 1}', values) == 'JSON: {"a": 1}'
    assert substitute("{x}", {"x": "y" * 5000}) == "y" * 1000
    # a variable cannot override the call's own identity
    assert prompt_context("1", "2", {"caller_id": "spoofed"})["caller_id"] == "1"


def test_parse_var() -> None:
    assert parse_var("account=12=34") == ("account", "12=34")
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_var("account")
    with pytest.raises(ValueError, match="invalid variable name"):
        parse_var("a-b=1")


# --------------------------------------------------------------------------- CLI


def test_the_example_suite_loads() -> None:
    from agi_bridge.ivrtest import load_suite

    suite = load_suite(Path(__file__).resolve().parents[2] / "examples" / "ivr-suite.yaml")
    assert [c.name for c in suite.cases] == ["number-entry", "representative", "answering-machine"]
    assert suite.cases[2].amd == "message" and suite.cases[2].expect.amd == "MACHINE"


def test_cli_suite_and_config_errors_exit_2_before_any_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agi_bridge import cli

    suite = tmp_path / "s.yaml"
    suite.write_text("cases:\n  - name: a\n    destination: '500'\n    goal: g\n    expekt: {}\n")
    assert cli.main(["test", str(suite)]) == 2
    assert f"error: {suite}:5 cases[0].expekt: unknown key" in capsys.readouterr().err

    suite.write_text("cases:\n  - name: a\n    destination: '500'\n    goal: g\n    agent: nope\n")
    assert cli.main(["test", str(suite)]) == 2
    err = capsys.readouterr().err
    assert f"error: {suite} cases[0] --agent: no agent named 'nope'" in err

    suite.write_text("cases:\n  - name: a\n    destination: '500'\n    goal: g\n")
    assert cli.main(["test", str(suite)]) == 2
    assert "cases[0]: no agent (set agent in the case or defaults, or --agent)" in (
        capsys.readouterr().err
    )
    assert cli.main(["test", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err
