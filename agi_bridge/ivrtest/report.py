"""What ``agi-bridge test`` writes: the verdict of each case, the summary on the terminal,
JSON and JUnit XML (the format CI systems read: Jenkins, GitLab, GitHub actions)."""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import Any

from agi_bridge.ivrtest.checks import Evidence, Failure
from agi_bridge.outbound.result import OUTCOME_TEXT


@dataclass
class CaseVerdict:
    name: str
    passed: bool
    outcome: str
    detail: str
    duration_s: float  # the case: placing the call to its end
    failures: list[Failure] = field(default_factory=list)
    evidence: Evidence | None = None
    error: str = ""  # the case could not run (not a failed expectation)
    artifacts: str = ""  # kept on failure: the record (events.jsonl, call.wav), verdict.json
    call: dict[str, Any] = field(default_factory=dict)  # CallResult.to_json()

    def to_json(self) -> dict[str, Any]:
        ev = self.evidence
        return {
            "name": self.name,
            "passed": self.passed,
            "outcome": self.outcome,
            "detail": self.detail,
            "duration_s": round(self.duration_s, 2),
            "failures": [asdict(f) for f in self.failures],
            "error": self.error,
            "digits_on_wire": ev.digits if ev else "",
            "wire_digits": ev.wire_digits if ev else [],
            "callee": [{"t": t, "text": text} for t, text in ev.callee] if ev else [],
            "longest_silence_s": list(ev.longest_silence) if ev else [],
            "artifacts": self.artifacts,
            "call": self.call,
        }


def suite_json(name: str, verdicts: list[CaseVerdict], seconds: float) -> dict[str, Any]:
    return {
        "suite": name,
        "passed": all(v.passed for v in verdicts),
        "cases": len(verdicts),
        "failures": sum(1 for v in verdicts if not v.passed and not v.error),
        "errors": sum(1 for v in verdicts if v.error),
        "time_s": round(seconds, 2),
        "results": [v.to_json() for v in verdicts],
    }


def to_json_text(name: str, verdicts: list[CaseVerdict], seconds: float) -> str:
    return json.dumps(suite_json(name, verdicts, seconds), indent=2) + "\n"


def junit_xml(
    name: str, verdicts: list[CaseVerdict], seconds: float, timestamp: dt.datetime
) -> str:
    """One ``<testsuite>`` in ``<testsuites>``; a case is a ``<testcase>`` with a
    ``<failure>`` per failed expectation (message: the expectation and what was wrong;
    text: the evidence) or an ``<error>`` when it could not run, and the callee's turns
    and the digits in ``<system-out>``."""
    failures = sum(1 for v in verdicts if not v.passed and not v.error)
    errors = sum(1 for v in verdicts if v.error)
    counts = {
        "tests": str(len(verdicts)),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": "0",
        "time": f"{seconds:.3f}",
    }
    root = ET.Element("testsuites", {"name": "agi-bridge test", **counts})
    suite = ET.SubElement(
        root,
        "testsuite",
        {"name": name, **counts, "timestamp": timestamp.strftime("%Y-%m-%dT%H:%M:%S")},
    )
    for v in verdicts:
        case = ET.SubElement(
            suite,
            "testcase",
            {"name": v.name, "classname": f"agi-bridge.{name}", "time": f"{v.duration_s:.3f}"},
        )
        if v.error:
            err = ET.SubElement(case, "error", {"message": v.error, "type": "error"})
            err.text = v.detail
        for f in v.failures:
            failure = ET.SubElement(
                case, "failure", {"message": f"{f.expectation}: {f.message}", "type": f.expectation}
            )
            failure.text = f.evidence
        out = ET.SubElement(case, "system-out")
        out.text = _case_text(v)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _case_text(v: CaseVerdict) -> str:
    lines = [f"outcome: {v.outcome} ({v.detail or '-'})"]
    if v.evidence is not None:
        lines.append(v.evidence.digits_text())
        lines += [f"{t:7.1f} s  callee: {text}" for t, text in v.evidence.callee]
    if v.artifacts:
        lines.append(f"artifacts: {v.artifacts}")
    return "\n".join(lines)


def format_summary(name: str, verdicts: list[CaseVerdict], seconds: float) -> str:
    """The readable end of the live view: one line per case, then each failure."""
    width = max(len(v.name) for v in verdicts)
    passed = sum(1 for v in verdicts if v.passed)
    lines = ["", f"Suite {name}: {passed}/{len(verdicts)} passed in {seconds:.1f} s"]
    for v in verdicts:
        mark = "PASS" if v.passed else ("ERROR" if v.error else "FAIL")
        outcome = OUTCOME_TEXT.get(v.outcome, v.outcome)
        digits = v.evidence.digits if v.evidence else ""
        lines.append(
            f"  {mark:<5} {v.name:<{width}}  {outcome:<22} {v.duration_s:6.1f} s  "
            f"digits {digits or '-'}"
        )
    for v in verdicts:
        if v.passed:
            continue
        lines.append("")
        lines.append(f"  {v.name}:")
        if v.error:
            lines.append(f"    error: {v.error}")
        for f in v.failures:
            lines.append(f"    {f.expectation}: {f.message}")
            lines.append(f"      evidence: {f.evidence}")
        if v.artifacts:
            lines.append(f"    kept: {v.artifacts}")
    return "\n".join(lines)
