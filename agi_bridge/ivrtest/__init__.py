"""``agi-bridge test``: IVR test suites judged on what happened on the call."""

from agi_bridge.ivrtest.checks import Evidence, Failure, Monitor, Stop, check
from agi_bridge.ivrtest.report import CaseVerdict, junit_xml, suite_json
from agi_bridge.ivrtest.suite import Case, Expect, Suite, load_suite, load_suite_text

__all__ = [
    "Case",
    "CaseVerdict",
    "Evidence",
    "Expect",
    "Failure",
    "Monitor",
    "Stop",
    "Suite",
    "check",
    "junit_xml",
    "load_suite",
    "load_suite_text",
    "suite_json",
]
