"""Sans-I/O parts of ``agi-bridge test``: the live detectors and the expectation checks.

Nothing here reads a clock or a socket: times are seconds since the call was placed,
passed in by the runner, so the tests feed exact timelines.

* :class:`Monitor` follows one call as it happens (callee speech from the Realtime VAD
  events, callee transcript turns, keypresses) and says when the case must end early:
  ``stuck`` (the same prompt heard ``stuck_repeats`` times, or ``stuck_repeats - 1``
  keypresses in a row each answered by a prompt heard before: the menu never changes)
  or ``dead_air`` (no callee speech for ``dead_air_s``). It also measures the longest
  callee silence.
* :func:`check` compares an :class:`Expect` with the :class:`Evidence` and returns every
  failed expectation with the evidence that shows why.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from agi_bridge.ivrtest.suite import Expect

SAME_PROMPT_RATIO = 0.9  # difflib ratio of two normalized prompts to count as the same
EXCERPT_TURNS = 4  # callee turns quoted as evidence


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def same_prompt(a: str, b: str) -> bool:
    a, b = normalize(a), normalize(b)
    if not a or not b:
        return False
    return a == b or difflib.SequenceMatcher(None, a, b).ratio() >= SAME_PROMPT_RATIO


@dataclass
class Stop:
    outcome: str  # "stuck" | "dead_air"
    detail: str


class Monitor:
    """Stuck and dead-air detection, and callee silence, for one call."""

    def __init__(self, *, dead_air_s: float, stuck_repeats: int) -> None:
        self.dead_air_s = dead_air_s
        self.stuck_repeats = stuck_repeats
        self.prompts: list[tuple[float, str]] = []
        self.stop: Stop | None = None
        self._speaking = False
        self._silent_since: float | None = None  # None until answered
        self.longest_silence: tuple[float, float] = (0.0, 0.0)  # (from, to)
        self._await_after_key = False
        self._unchanged = 0

    # -------------------------------------------------------------------- inputs

    def answered(self, t: float) -> None:
        if self._silent_since is None:
            self._silent_since = t

    def speech_started(self, t: float) -> None:
        self.answered(t)
        self._end_silence(t)
        self._speaking = True

    def speech_stopped(self, t: float) -> None:
        self._speaking = False
        self._silent_since = t

    def callee_said(self, t: float, text: str) -> Stop | None:
        """A finished callee turn (transcript); may decide ``stuck``."""
        if not text.strip():
            return self.stop
        if not self._speaking:  # transcripts come after the speech: it was not silence
            self._end_silence(t)
            self._silent_since = t
        same = [when for when, said in self.prompts if same_prompt(said, text)]
        self.prompts.append((t, text))
        if self._await_after_key:
            self._await_after_key = False
            if same:  # nothing new after the keypress: a prompt heard before
                self._unchanged += 1
            else:
                self._unchanged = 0
        if self.stop is None and self.stuck_repeats > 0:
            if len(same) + 1 >= self.stuck_repeats:
                times = ", ".join(f"{w:.1f}" for w in [*same, t])
                self.stop = Stop(
                    "stuck",
                    f"the same prompt was heard {len(same) + 1} times (at {times} s): "
                    f"{_quote(text)}",
                )
            elif self.stuck_repeats > 1 and self._unchanged >= self.stuck_repeats - 1:
                self.stop = Stop(
                    "stuck",
                    f"{self._unchanged} keypresses in a row led to no new prompt (the menu "
                    f"does not change): {_quote(text)}",
                )
        return self.stop

    def key_sent(self, t: float) -> None:
        self._await_after_key = True

    def tick(self, t: float) -> Stop | None:
        """Called periodically; decides ``dead_air``."""
        if self.stop is None and self.dead_air_s > 0 and not self._speaking:
            since = self._silent_since
            if since is not None and t - since >= self.dead_air_s:
                self.stop = Stop(
                    "dead_air", f"no callee speech for {t - since:.1f} s (since {since:.1f} s)"
                )
        return self.stop

    def finish(self, t: float) -> None:
        """The call ended at ``t``: close the running silence."""
        if not self._speaking:
            self._end_silence(t)
        self._silent_since = None

    def _end_silence(self, t: float) -> None:
        since = self._silent_since
        if since is not None and t - since > self.longest_silence[1] - self.longest_silence[0]:
            self.longest_silence = (since, t)


def _quote(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


# ----------------------------------------------------------------------- checking


@dataclass
class Evidence:
    """What happened on the call, from Asterisk and the call's events."""

    outcome: str
    detail: str = ""
    duration_s: float = 0.0  # answer to end (or placing to end when never answered)
    wire_digits: list[dict[str, Any]] = field(default_factory=list)  # {"digit", "t"}
    callee: list[tuple[float, str]] = field(default_factory=list)  # callee turns
    longest_silence: tuple[float, float] = (0.0, 0.0)
    amd: dict[str, str] = field(default_factory=dict)  # {"status", "cause"} when AMD ran

    @property
    def digits(self) -> str:
        return "".join(str(d["digit"]) for d in self.wire_digits)

    def digits_text(self) -> str:
        if not self.wire_digits:
            return "no digits on the wire"
        keys = ", ".join(f"{d['digit']} at {d['t']:.1f} s" for d in self.wire_digits)
        return f"digits on the wire {self.digits!r} ({keys})"

    def excerpt(self, turns: list[tuple[float, str]] | None = None) -> str:
        turns = self.callee[-EXCERPT_TURNS:] if turns is None else turns[:EXCERPT_TURNS]
        if not turns:
            return "the callee said nothing"
        return "callee: " + " | ".join(f"{t:.1f} s {_quote(text)}" for t, text in turns)


@dataclass
class Failure:
    expectation: str  # "expect.digits"
    message: str  # what was wrong
    evidence: str  # what happened instead


def check(expect: Expect, ev: Evidence) -> list[Failure]:
    """Every expectation of ``expect`` that ``ev`` does not meet (empty: passed). Without
    an outcome expectation the case must end ``goal_achieved``."""
    failures: list[Failure] = []
    wanted = (expect.outcome,) if isinstance(expect.outcome, str) else expect.outcome
    wanted = tuple(w for w in wanted if w) or ("goal_achieved",)
    if ev.outcome not in wanted:
        failures.append(
            Failure(
                "expect.outcome",
                f"expected {' or '.join(wanted)}, got {ev.outcome}",
                f"{ev.detail or '-'}; {ev.excerpt()}",
            )
        )
    if expect.digits and ev.digits != expect.digits:
        failures.append(
            Failure(
                "expect.digits",
                f"expected {expect.digits!r} on the wire, got {ev.digits!r}",
                ev.digits_text(),
            )
        )
    if expect.digits_match and not re.fullmatch(expect.digits_match, ev.digits):
        failures.append(
            Failure(
                "expect.digits_match",
                f"{ev.digits!r} does not match /{expect.digits_match}/",
                ev.digits_text(),
            )
        )
    text = " ".join(said for _, said in ev.callee)
    for j, pattern in enumerate(expect.transcript):
        if not re.search(pattern, text, re.IGNORECASE):
            failures.append(
                Failure(
                    f"expect.transcript[{j}]",
                    f"/{pattern}/ not heard from the callee",
                    ev.excerpt(),
                )
            )
    for j, pattern in enumerate(expect.not_transcript):
        hits = [(t, said) for t, said in ev.callee if re.search(pattern, said, re.IGNORECASE)]
        if hits:
            failures.append(
                Failure(
                    f"expect.not_transcript[{j}]",
                    f"/{pattern}/ was heard at {hits[0][0]:.1f} s",
                    ev.excerpt(hits),
                )
            )
    failures += _check_order(expect.prompts_in_order, ev)
    if expect.amd and ev.amd.get("status") != expect.amd:
        got = ev.amd.get("status") or "no AMD result"
        failures.append(
            Failure(
                "expect.amd",
                f"expected {expect.amd}, got {got}",
                f"AMD cause {ev.amd.get('cause') or '-'}; {ev.outcome}: {ev.detail or '-'}",
            )
        )
    if expect.max_duration_s is not None and ev.duration_s > expect.max_duration_s:
        failures.append(
            Failure(
                "expect.max_duration_s",
                f"the call lasted {ev.duration_s:.1f} s, more than {expect.max_duration_s:g} s",
                f"{ev.outcome}: {ev.detail or '-'}",
            )
        )
    start, end = ev.longest_silence
    if expect.max_silence_s is not None and end - start > expect.max_silence_s:
        failures.append(
            Failure(
                "expect.max_silence_s",
                f"the callee was silent for {end - start:.1f} s (from {start:.1f} to "
                f"{end:.1f} s), more than {expect.max_silence_s:g} s",
                ev.excerpt([(t, s) for t, s in ev.callee if t <= start][-2:]),
            )
        )
    return failures


def _check_order(patterns: tuple[str, ...], ev: Evidence) -> list[Failure]:
    """Each prompt in a later callee turn than the previous one (a turn may hold one)."""
    position = 0
    previous = "the start of the call"
    for j, pattern in enumerate(patterns):
        for k in range(position, len(ev.callee)):
            if re.search(pattern, ev.callee[k][1], re.IGNORECASE):
                t = ev.callee[k][0]
                position, previous = k + 1, f"/{pattern}/ at {t:.1f} s"
                break
        else:
            return [
                Failure(
                    f"expect.prompts_in_order[{j}]",
                    f"prompt {j + 1} of {len(patterns)} /{pattern}/ not heard after {previous}",
                    ev.excerpt(ev.callee[position:]),
                )
            ]
    return []
