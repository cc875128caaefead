"""``agi-bridge test`` suite files: YAML -> frozen dataclasses, validated before any call.

Errors name the file, the key path and the line, like the config loader (whose
``_Loader`` does the typed conversion here too)::

    suite.yaml:12 cases[1].expect.prompts_in_order[0]: bad regular expression: ...

A suite::

    name: demo-ivr                      # optional: the JUnit testsuite name
    concurrency: 2                      # cases at the same time (default 1)
    defaults:                           # any case key; a case overrides it
      agent: ivr
      destination: Local/500@agi-bridge-ivr-demo
    cases:
      - name: number-entry
        goal: Go to messages, choose number entry and enter {number}.
        variables: {number: "12345"}
        expect:
          outcome: goal_achieved
          digits: "2112345#"
          prompts_in_order: ["press 2 for messages", "enter the number"]
          max_duration_s: 60
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agi_bridge.config.load import _Loader
from agi_bridge.config.schema import DialString
from agi_bridge.errors import ConfigError
from agi_bridge.outbound.result import AMD_POLICIES, EXIT_CODES

# Outcomes an expectation may name: those of `agi-bridge call` plus the detectors'.
OUTCOMES = tuple(EXIT_CODES)
AMD_STATUSES = ("HUMAN", "MACHINE", "NOTSURE")


@dataclass(frozen=True)
class Expect:
    """What must have happened on the call (checked on Asterisk's evidence, not the
    agent's words). An empty value is not checked."""

    # The final outcome: one name, or a list of acceptable ones.
    outcome: str | tuple[str, ...] = ""
    # The digits sent on the wire (AMI DTMFEnd events of the call's channel), exactly...
    digits: str = ""
    # ...or matching this regular expression (the whole string).
    digits_match: str = ""
    # Regular expressions that must each match somewhere in the callee's transcript.
    transcript: tuple[str, ...] = ()
    # Regular expressions that must match nowhere in it.
    not_transcript: tuple[str, ...] = ()
    # Regular expressions matched against the callee's turns, in this order.
    prompts_in_order: tuple[str, ...] = ()
    max_duration_s: float | None = None  # answer to end, seconds
    max_silence_s: float | None = None  # longest stretch without callee speech, seconds
    amd: str = ""  # Asterisk's AMD() verdict (the case sets amd): HUMAN, MACHINE, NOTSURE


@dataclass(frozen=True)
class Case:
    name: str = ""  # required, unique
    destination: str = ""  # required (here or in defaults)
    agent: str = ""  # required (here, in defaults, or --agent)
    goal: str = ""  # required
    caller_id: str = ""
    # {name} placeholders in the goal, the instructions and the greeting.
    variables: Mapping[str, DialString] = field(default_factory=dict)
    timeout_s: float | None = None  # whole call (default outbound.timeout_s)
    ring_timeout_s: float | None = None
    # No callee speech for this long ends the case as dead_air (0: off).
    dead_air_s: float = 30.0
    # The same prompt heard this many times, or a menu unchanged after this many
    # keypresses, ends the case as stuck (0: off).
    stuck_repeats: int = 3
    # Answering-machine detection and what to do with a machine: hangup, message, talk.
    amd: str = ""
    voicemail_message: str = ""
    expect: Expect = field(default_factory=Expect)


@dataclass(frozen=True)
class Suite:
    name: str = ""
    concurrency: int = 1
    defaults: Case = field(default_factory=Case)
    cases: tuple[Case, ...] = ()
    source: str = ""  # the file (not a YAML key)


def load_suite(path: str | Path) -> Suite:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(p)) from exc
    return load_suite_text(text, str(p))


def load_suite_text(text: str, file: str = "<string>") -> Suite:
    """Parse and validate a suite; every error names file, key and line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            f"not valid YAML: {exc}", file=file, line=mark.line + 1 if mark else None
        ) from exc
    if root is None:
        raise ConfigError("the suite is empty: it needs a cases list", file=file)
    loader = _Loader(file)
    _merge_case_defaults(root, loader)
    suite: Suite = loader.dataclass(root, Suite, "")

    def fail(key: str, message: str) -> ConfigError:
        node = loader.key_nodes.get(key) or loader.nodes.get(key)
        return loader.error(node, key, message)

    if not suite.cases:
        raise fail("cases", "the suite needs at least one case")
    if suite.concurrency < 1:
        raise fail("concurrency", "must be >= 1")
    seen: dict[str, int] = {}
    for i, case in enumerate(suite.cases):
        where = f"cases[{i}]"
        if not case.name:
            raise fail(where, "a case needs a name")
        if case.name in seen:
            first = seen[case.name]
            raise fail(f"{where}.name", f"name {case.name!r} already used by cases[{first}]")
        seen[case.name] = i
        for key in ("destination", "goal"):
            if not getattr(case, key).strip():
                raise fail(where, f"a case needs a {key} (in the case or in defaults)")
        for key in ("timeout_s", "ring_timeout_s"):
            value = getattr(case, key)
            if value is not None and value <= 0:
                raise fail(f"{where}.{key}", "must be > 0")
        if case.amd and case.amd not in AMD_POLICIES:
            raise fail(f"{where}.amd", f"expected one of {', '.join(AMD_POLICIES)}")
        if case.expect.amd and not case.amd:
            raise fail(f"{where}.expect.amd", "needs amd (a policy) in the case")
        _check_expect(case.expect, f"{where}.expect", fail)
    return dataclasses.replace(suite, source=file)


def _check_expect(expect: Expect, where: str, fail: Any) -> None:
    outcomes = (expect.outcome,) if isinstance(expect.outcome, str) else expect.outcome
    for j, outcome in enumerate(outcomes):
        if outcome and outcome not in OUTCOMES:
            key = f"{where}.outcome" if isinstance(expect.outcome, str) else f"{where}.outcome[{j}]"
            raise fail(key, f"unknown outcome {outcome!r}, expected one of {', '.join(OUTCOMES)}")
    if expect.amd and expect.amd not in AMD_STATUSES:
        raise fail(f"{where}.amd", f"expected one of {', '.join(AMD_STATUSES)}")
    if expect.digits and expect.digits_match:
        raise fail(f"{where}.digits_match", "give digits or digits_match, not both")
    if expect.digits and not re.fullmatch(r"[0-9*#A-D]+", expect.digits):
        raise fail(f"{where}.digits", "expected DTMF keys 0-9 * # A-D")
    patterns: list[tuple[str, str]] = []
    if expect.digits_match:
        patterns.append((f"{where}.digits_match", expect.digits_match))
    for key in ("transcript", "not_transcript", "prompts_in_order"):
        patterns += [(f"{where}.{key}[{j}]", p) for j, p in enumerate(getattr(expect, key))]
    for key, pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise fail(key, f"bad regular expression: {exc}") from None
    for key in ("max_duration_s", "max_silence_s"):
        value = getattr(expect, key)
        if value is not None and value <= 0:
            raise fail(f"{where}.{key}", "must be > 0")


def _merge_case_defaults(root: yaml.Node, loader: _Loader) -> None:
    """Every case node gets the ``defaults:`` keys it does not set (``expect`` and
    ``variables`` merge key by key), so errors keep the line where a value is written."""
    if not isinstance(root, yaml.MappingNode):
        return
    top = {str(loader.scalar(k)): v for k, v in root.value}
    defaults, cases = top.get("defaults"), top.get("cases")
    if not isinstance(defaults, yaml.MappingNode) or not isinstance(cases, yaml.SequenceNode):
        return
    loader.dataclass(defaults, Case, "defaults")  # a bad default is reported once, there
    cases.value = [_merged(defaults, node) for node in cases.value]


def _merged(base: yaml.MappingNode, node: yaml.Node) -> yaml.Node:
    if not isinstance(node, yaml.MappingNode):
        return node  # the loader reports it
    own = {str(k.value): (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
    pairs = [(k, v) for k, v in base.value if str(k.value) not in own]
    for k, v in node.value:
        inherited = next((dv for dk, dv in base.value if str(dk.value) == str(k.value)), None)
        if isinstance(inherited, yaml.MappingNode) and isinstance(v, yaml.MappingNode):
            v = _merged(inherited, v)
        pairs.append((k, v))
    return yaml.MappingNode(node.tag, pairs, node.start_mark, node.end_mark)


def plain(value: Any) -> Any:
    """Read-only mappings -> dicts (for JSON)."""
    if isinstance(value, (Mapping, types.MappingProxyType)):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value
