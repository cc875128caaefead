"""``agi-bridge test SUITE.yaml``: run the cases of a suite as outbound calls and judge
each one on what happened (Asterisk's DTMF events, the callee's transcript and speech,
the call's outcome and timings), never on the agent's own claim.

Each case is one :class:`~agi_bridge.outbound.OutboundCall` (its own bridge and AMI
connection), at most ``concurrency`` at a time. A :class:`~agi_bridge.ivrtest.checks.Monitor`
watches the call's events and ends it early as ``stuck`` or ``dead_air``. Every case
records (events.jsonl, stereo call.wav) under ``--artifacts DIR/<case>``; the record is
deleted when the case passes and kept, with ``verdict.json``, when it fails.

Exit code: 0 every case passed, 1 a case failed, 2 a suite or config error (before any
call), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import re
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from agi_bridge.config import Config
from agi_bridge.errors import ConfigError
from agi_bridge.ivrtest.checks import Evidence, Monitor, check
from agi_bridge.ivrtest.report import CaseVerdict, format_summary, junit_xml, to_json_text
from agi_bridge.ivrtest.suite import Case, Suite, load_suite
from agi_bridge.outbound import OutboundCall
from agi_bridge.outbound.result import CallResult, Printer

TICK_S = 0.25  # how often dead air is checked


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "case"


class CaseRun:
    """One case: its call, its monitor, its verdict."""

    def __init__(
        self,
        config: Config,
        case: Case,
        *,
        artifacts: Path,
        printer: Printer,
        scenario: Any = None,
    ) -> None:
        self.case = case
        self.dir = artifacts / slug(case.name)
        records = dataclasses.replace(
            config.records, enabled=True, dir=str(self.dir), wav=True, retention_days=0
        )
        self.monitor = Monitor(dead_air_s=case.dead_air_s, stuck_repeats=case.stuck_repeats)
        self._print = printer
        self.call = OutboundCall(
            dataclasses.replace(config, records=records),
            case.destination,
            agent=case.agent,
            goal=case.goal,
            timeout_s=case.timeout_s,
            ring_timeout_s=case.ring_timeout_s,
            caller_id=case.caller_id or None,
            printer=printer,
            simulator_scenario=scenario,
            variables=case.variables,
            watch=self._watch,
            amd=case.amd,
            voicemail_message=case.voicemail_message,
        )

    def _watch(self, kind: str, data: dict[str, Any], t: float) -> None:
        m = self.monitor
        if kind == "answered":
            m.answered(t)
        elif kind == "speech_started":
            m.speech_started(t)
        elif kind == "speech_stopped":
            m.speech_stopped(t)
        elif kind == "dtmf_sent":
            m.key_sent(t)
        elif kind == "caller_transcript":
            m.callee_said(t, str(data.get("text", "")))
        if m.stop is not None:
            self.call.stop(m.stop.outcome, m.stop.detail)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            if self.call.result.answered and self.monitor.tick(self.call.now()) is not None:
                stop = self.monitor.stop
                assert stop is not None
                self.call.stop(stop.outcome, stop.detail)

    async def run(self) -> CaseVerdict:
        started = time.monotonic()
        ticker = asyncio.create_task(self._tick(), name=f"tick {self.case.name}")
        try:
            result = await self.call.run()
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        return self.judge(result, time.monotonic() - started)

    def judge(self, result: CallResult, seconds: float) -> CaseVerdict:
        self.monitor.finish(result.duration_s)
        answered_at = result.answered_after_s or 0.0
        evidence = Evidence(
            outcome=result.outcome,
            detail=result.detail,
            duration_s=result.duration_s - answered_at if result.answered else result.duration_s,
            wire_digits=[{"digit": d["digit"], "t": d["t"]} for d in result.wire_digits],
            callee=[
                (float(e["t"]), str(e["text"]))
                for e in result.transcript
                if e.get("who") == "callee" and e.get("text")
            ],
            longest_silence=self.monitor.longest_silence,
            amd=dict(result.amd),
        )
        failures = check(self.case.expect, evidence)
        verdict = CaseVerdict(
            name=self.case.name,
            passed=not failures,
            outcome=result.outcome,
            detail=result.detail,
            duration_s=seconds,
            failures=failures,
            evidence=evidence,
            call=result.to_json(),
        )
        self._keep_or_clean(verdict, result)
        mark = "PASS" if verdict.passed else "FAIL"
        self._print(f"{mark}: {', '.join(f.expectation for f in failures) or result.outcome}")
        return verdict

    def _keep_or_clean(self, verdict: CaseVerdict, result: CallResult) -> None:
        if verdict.passed:
            shutil.rmtree(self.dir, ignore_errors=True)
            verdict.call["record_dir"] = None
            return
        where = Path(result.record_dir) if result.record_dir else self.dir
        where.mkdir(parents=True, exist_ok=True)
        (where / "verdict.json").write_text(json.dumps(verdict.to_json(), indent=2) + "\n")
        verdict.artifacts = str(where)


async def run_suite(runs: list[CaseRun], concurrency: int) -> list[CaseVerdict]:
    """Every case, ``concurrency`` at a time, in the suite's order; Ctrl-C hangs up."""
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        for r in runs:
            r.call.interrupt()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, interrupt)
    slots = asyncio.Semaphore(concurrency)

    async def one(r: CaseRun) -> CaseVerdict:
        async with slots:
            if r.call.interrupted:
                result = r.call.skip("interrupted (Ctrl-C) before dialing")
                return r.judge(result, 0.0)
            return await r.run()

    return list(await asyncio.gather(*(one(r) for r in runs)))


# ------------------------------------------------------------------------------- CLI

EPILOG = """\
A suite (YAML) lists cases; each is an outbound call with a goal and expectations that
are checked on what happened, not on what the agent says:
  outcome            goal_achieved (the default), goal_not_achieved, remote_hangup,
                     stuck, dead_air, busy, no_answer, ... (one or a list)
  digits             the exact DTMF digits on the wire (Asterisk's DTMFEnd events)
  digits_match       or a regular expression for them
  transcript         regexes that must each match the callee's transcript
  not_transcript     regexes that must not
  prompts_in_order   regexes matched against the callee's turns, in order
  max_duration_s     answer to hang-up
  max_silence_s      the longest stretch without callee speech
Per case: dead_air_s (end the call after this much callee silence, default 30),
stuck_repeats (the same prompt this many times ends it as stuck, default 3).

exit codes: 0 every case passed, 1 a case failed, 2 suite or config error, 130 Ctrl-C.
Failed cases keep their record (events.jsonl, stereo call.wav, verdict.json) under
--artifacts DIR/<case>/.
"""


def add_cli(sub: Any) -> None:
    p = sub.add_parser(
        "test",
        help="run an IVR test suite: outbound calls judged on digits, prompts, outcome",
        description="Run the cases of a suite file as outbound calls and check each "
        "against its expectations; JSON and JUnit XML reports for CI.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("suite", help="the suite YAML file")
    p.add_argument("-c", "--config", help="YAML config file (AMI, Realtime, agents)")
    p.add_argument("--agent", help="agent for cases that name none")
    p.add_argument("--concurrency", type=int, help="cases at the same time (default: suite)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON ('-': stdout)")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML for CI")
    p.add_argument(
        "--artifacts",
        metavar="DIR",
        default="agi-bridge-test-artifacts",
        help="where failed cases keep their recording and event log",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no live transcript")
    p.add_argument(
        "--scenario", help="scenario YAML for the bundled simulator (when no Realtime key is set)"
    )


def build_runs(args: argparse.Namespace, config: Config, suite: Suite) -> list[CaseRun]:
    scenario = None
    if args.scenario:
        from agi_bridge.simulator import Scenario

        scenario = Scenario.from_yaml(args.scenario)
    live = sys.stderr if args.json == "-" else sys.stdout
    width = max(len(c.name) for c in suite.cases)
    runs = []
    for i, case in enumerate(suite.cases):
        if not case.agent:
            if not args.agent:
                raise ConfigError(
                    "no agent (set agent in the case or defaults, or --agent)",
                    file=suite.source,
                    key=f"cases[{i}]",
                )
            case = dataclasses.replace(case, agent=args.agent)

        def show(line: str, prefix: str = f"[{case.name:<{width}}] ") -> None:
            if not args.quiet:
                print(f"{prefix}{line}", file=live, flush=True)

        try:
            runs.append(
                CaseRun(
                    config, case, artifacts=Path(args.artifacts), printer=show, scenario=scenario
                )
            )
        except ConfigError as exc:
            raise ConfigError(
                exc.reason, file=suite.source, key=f"cases[{i}] {exc.key}".strip()
            ) from None
    return runs


def run_cli(args: argparse.Namespace, config: Config) -> int:
    suite = load_suite(args.suite)
    concurrency = args.concurrency if args.concurrency is not None else suite.concurrency
    if concurrency < 1:
        raise ConfigError("must be >= 1", key="--concurrency")
    runs = build_runs(args, config, suite)
    name = suite.name or Path(args.suite).stem
    timestamp = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    verdicts = asyncio.run(run_suite(runs, concurrency))
    seconds = time.monotonic() - started
    out = sys.stderr if args.json == "-" else sys.stdout
    print(format_summary(name, verdicts, seconds), file=out, flush=True)
    if args.json:
        text = to_json_text(name, verdicts, seconds)
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text)
    if args.junit:
        Path(args.junit).write_text(junit_xml(name, verdicts, seconds, timestamp))
    if any(r.call.interrupted for r in runs):
        return 130
    return 0 if all(v.passed for v in verdicts) else 1
