"""The silent-caller policy: prompt (by the service) a few times, then a goodbye."""

from __future__ import annotations

from agi_bridge.silent_caller import (
    GOODBYE_INSTRUCTIONS,
    SilenceAction,
    SilencePolicy,
    on_caller_idle,
)


def test_prompts_then_goodbye() -> None:
    policy = SilencePolicy(max_prompts=2)
    assert on_caller_idle(policy, 1) == SilenceAction("wait")
    assert on_caller_idle(policy, 2) == SilenceAction("wait")
    assert on_caller_idle(policy, 3) == SilenceAction("end_call", GOODBYE_INSTRUCTIONS)


def test_without_service_responses_the_bridge_prompts() -> None:
    policy = SilencePolicy(max_prompts=1, service_responds=False)
    assert on_caller_idle(policy, 1) == SilenceAction("prompt")
    assert on_caller_idle(policy, 2).kind == "end_call"


def test_zero_prompts_ends_at_the_first_timeout() -> None:
    assert on_caller_idle(SilencePolicy(max_prompts=0), 1).kind == "end_call"
