"""`agi-bridge test` end to end: suites against the shipped demo IVR on a real Asterisk 22.

The runner is a real subprocess; the agent is the bundled Simulator in this test process
(see test_outbound_ivr.py for how its script follows the menu). The simulator does not
transcribe: each scripted turn carries the words of the prompt that led to it
(``caller_text``), as a transcriber would report them. What the verdicts check comes from
Asterisk: the digits are its DTMFEnd events, the outcome its hangup, the silences the
callee's audio (the simulator's VAD on the real audio Asterisk sent).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from agi_bridge.simulator import Scenario, ToolCall, Turn
from tests.e2e.test_outbound_ivr import SILENT, Outbound, StartOutbound, outbound  # noqa: F401

pytestmark = pytest.mark.e2e

MAIN = "Hello. Press 1 for extension. Press 2 for messages. Press 3 for calls waiting."
SUB = "Press 1 for number. Press star to return to the main menu."
ENTER = "Please enter the number you wish to call, followed by the pound key."
ENTERED = "You entered 1 2 3 4 5. Thank you."


def dtmf(digits: str, heard: str) -> Turn:
    return Turn("", tool_calls=(ToolCall("send_dtmf", {"digits": digits}),), caller_text=heard)


NUMBER_ENTRY = Scenario(
    turns=[
        dtmf("2", MAIN),
        SILENT,
        dtmf("1", SUB),
        SILENT,
        dtmf("12345#", ENTER),
        SILENT,
        Turn(
            "Thank you, goodbye.",
            tool_calls=(ToolCall("hangup", {"reason": "goal achieved: number entered"}),),
            caller_text=ENTERED,
        ),
    ],
    default_reply="",
)

CASE = """
  - name: {name}
    goal: Go to messages, choose number entry and enter the number {{number}}.
    variables: {{number: 12345}}
    expect:
      outcome: goal_achieved
      digits: "{digits}"
      transcript: ["you entered 1 2 3 4 5"]
      prompts_in_order: ["press 2 for messages", "press 1 for number", "{prompt}"]
      max_duration_s: 60
"""


def suite(*cases: str, concurrency: int = 2) -> str:
    return (
        f"name: demo-ivr\nconcurrency: {concurrency}\n"
        "defaults: {agent: ivr, destination: Local/500@agi-bridge-ivr-demo, timeout_s: 60}\n"
        "cases:" + "".join(cases)
    )


@dataclass
class SuiteRun:
    code: int
    stdout: str
    stderr: str
    report: dict[str, object]
    junit: ET.Element
    artifacts: Path


async def run_suite(o: Outbound, text: str, name: str) -> SuiteRun:
    path = o.tmp / f"{name}.yaml"
    path.write_text(text)
    report, junit, artifacts = o.tmp / f"{name}.json", o.tmp / f"{name}.xml", o.tmp / name
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agi_bridge",
        "test",
        str(path),
        "-c",
        str(o.config),
        "--json",
        str(report),
        "--junit",
        str(junit),
        "--artifacts",
        str(artifacts),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=o.tmp,
        env={**os.environ, "OPENAI_API_KEY": "sk-e2e"},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 150)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(f"agi-bridge test did not finish:\n{out.decode()}\n{err.decode()}")
    assert proc.returncode is not None
    assert report.exists(), out.decode() + err.decode()
    return SuiteRun(
        proc.returncode,
        out.decode(),
        err.decode(),
        json.loads(report.read_text()),
        ET.parse(junit).getroot(),
        artifacts,
    )


def check_junit(root: ET.Element) -> dict[str, ET.Element]:
    """The JUnit structure CI systems read; returns the testcases by name."""
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    ts = suites[0]
    for attr in ("name", "tests", "failures", "errors", "skipped", "time", "timestamp"):
        assert ts.get(attr) is not None, attr
    cases = ts.findall("testcase")
    assert int(ts.get("tests", "-1")) == len(cases)
    failed = [c for c in cases if c.find("failure") is not None]
    assert int(ts.get("failures", "-1")) == len(failed)
    assert int(ts.get("errors", "-1")) == sum(1 for c in cases if c.find("error") is not None)
    for c in cases:
        assert c.get("name") and c.get("classname")
        float(c.get("time", "x"))
        for f in c.findall("failure"):
            assert f.get("message") and f.get("type")
    return {str(c.get("name")): c for c in cases}


async def test_demo_ivr_suite_passes_and_a_wrong_expectation_fails(
    outbound: StartOutbound,  # noqa: F811
) -> None:
    o = await outbound(NUMBER_ENTRY)
    started = time.monotonic()
    ok = await run_suite(
        o,
        suite(
            CASE.format(name="number-entry", digits="2112345#", prompt="enter the number"),
            CASE.format(name="number-entry-again", digits="2112345#", prompt="you entered"),
        ),
        "passing",
    )
    assert ok.code == 0, ok.stdout + ok.stderr
    assert time.monotonic() - started < 60  # two calls at once, not one after the other
    results = ok.report["results"]
    assert isinstance(results, list) and [r["passed"] for r in results] == [True, True]
    for r in results:
        assert r["digits_on_wire"] == "2112345#"  # Asterisk's DTMFEnd events
        assert [d["digit"] for d in r["wire_digits"]] == list("2112345#")
        assert r["call"]["goal"].endswith("enter the number 12345.")  # {number} substituted
    cases = check_junit(ok.junit)
    assert set(cases) == {"number-entry", "number-entry-again"}
    assert all(c.find("failure") is None for c in cases.values())
    assert not ok.artifacts.exists() or not any(ok.artifacts.rglob("call.wav"))
    assert "Suite demo-ivr: 2/2 passed" in ok.stdout
    # the live view: every line says which case it belongs to
    assert re.search(r"^\[number-entry      \] +[\d.]+s  agent presses 12345#$", ok.stdout, re.M)
    await asyncio.to_thread(o.asterisk.wait_for_no_channels, 5)

    bad = await run_suite(
        o,
        suite(
            CASE.format(name="right", digits="2112345#", prompt="enter the number"),
            CASE.format(name="wrong-digits", digits="2212345#", prompt="press 3 for calls"),
        ),
        "failing",
    )
    assert bad.code == 1, bad.stdout + bad.stderr
    by_name = {r["name"]: r for r in bad.report["results"]}  # type: ignore[union-attr]
    assert by_name["right"]["passed"] is True
    wrong = by_name["wrong-digits"]
    assert wrong["passed"] is False and wrong["outcome"] == "goal_achieved"
    failures = {f["expectation"]: f for f in wrong["failures"]}
    assert set(failures) == {"expect.digits", "expect.prompts_in_order[2]"}
    assert failures["expect.digits"]["message"] == (
        "expected '2212345#' on the wire, got '2112345#'"
    )
    assert "2 at " in failures["expect.digits"]["evidence"]
    assert (
        "/press 3 for calls/ not heard after /press 1 for number/"
        in (failures["expect.prompts_in_order[2]"]["message"])
    )
    cases = check_junit(bad.junit)
    assert cases["right"].find("failure") is None
    messages = [f.get("message", "") for f in cases["wrong-digits"].findall("failure")]
    assert any(m.startswith("expect.digits: expected '2212345#'") for m in messages)
    # the failed case keeps its stereo recording, event log and verdict; the passed one not
    kept = Path(wrong["artifacts"])
    assert kept.is_relative_to(bad.artifacts / "wrong-digits")
    assert (kept / "call.wav").stat().st_size > 44
    assert (kept / "events.jsonl").stat().st_size > 0
    assert json.loads((kept / "verdict.json").read_text())["passed"] is False
    assert not (bad.artifacts / "right").exists()
    assert "FAIL  wrong-digits" in bad.stdout
    await asyncio.to_thread(o.asterisk.wait_for_no_channels, 5)


async def test_stuck_menu_and_dead_air_end_the_case(
    outbound: StartOutbound,  # noqa: F811
) -> None:
    # the agent never presses anything: the menu times out and plays again, same words
    o = await outbound(Scenario(turns=[Turn("", caller_text=MAIN)] * 5, default_reply=""))
    run = await run_suite(
        o,
        suite(
            """
  - name: silent-agent
    goal: Listen.
    expect: {outcome: stuck}
  - name: nobody-there
    destination: Local/204@agi-bridge-ivr-demo
    goal: Talk to someone.
    dead_air_s: 4
  - name: nobody-there-expected
    destination: Local/204@agi-bridge-ivr-demo
    goal: Talk to someone.
    dead_air_s: 4
    expect: {outcome: dead_air, max_duration_s: 15}
""",
            concurrency=3,
        ),
        "detectors",
    )
    assert run.code == 1, run.stdout + run.stderr
    by_name = {r["name"]: r for r in run.report["results"]}  # type: ignore[union-attr]
    stuck = by_name["silent-agent"]
    assert (stuck["passed"], stuck["outcome"]) == (True, "stuck"), stuck
    assert "the same prompt was heard 3 times" in stuck["detail"]
    assert len(stuck["callee"]) == 3
    dead = by_name["nobody-there"]
    assert (dead["passed"], dead["outcome"]) == (False, "dead_air"), dead
    assert dead["failures"][0]["message"] == "expected goal_achieved, got dead_air"
    assert "no callee speech for 4." in dead["detail"]
    assert by_name["nobody-there-expected"]["passed"] is True
    check_junit(run.junit)
    await asyncio.to_thread(o.asterisk.wait_for_no_channels, 5)
