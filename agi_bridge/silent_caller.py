"""What to do when the caller stays silent: a pure decision for the conversation core.

With server VAD's ``idle_timeout_ms`` set, the Realtime service sends
``input_audio_buffer.timeout_triggered`` (``rt.InputTimeout``, the neutral
``providers.base.CallerIdle``, the call event ``caller_idle``) when nobody spoke for that
long after the agent's last answer was played, commits the silent audio as an input item
and, per openai-python ``types/realtime/input_audio_buffer_timeout_triggered.py``,
*generates a response itself* (the model "may respond with ... a prompt to continue
speaking"). So the first timeouts need no action from the bridge: the model prompts the
caller ("Are you still there?"). After ``max_prompts`` timeouts in a row the bridge ends
the call politely instead of prompting forever: it cancels the response the service
started and asks for a goodbye, then hangs up once that goodbye has been played.

A caller who speaks (``speech_started``) resets the count to 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GOODBYE_INSTRUCTIONS = (
    "The caller has not said anything for a while. Say one short, friendly goodbye "
    "sentence and nothing else."
)


@dataclass(frozen=True, slots=True)
class SilencePolicy:
    max_prompts: int = 2  # silent timeouts the model may answer with a prompt
    goodbye_instructions: str = GOODBYE_INSTRUCTIONS
    # False when turn_detection.create_response is off: then the bridge must ask for the
    # prompt itself (response.create), the service will not
    service_responds: bool = True


@dataclass(frozen=True, slots=True)
class SilenceAction:
    """``wait``: the service's own response prompts the caller; ``prompt``: send
    ``response.create`` (no instructions: the model decides how to prompt);
    ``end_call``: ``response.cancel`` (if the service responds), then ``response.create``
    with ``instructions``, then hang up after that response has been played."""

    kind: Literal["wait", "prompt", "end_call"]
    instructions: str = ""


def on_caller_idle(policy: SilencePolicy, timeouts_in_a_row: int) -> SilenceAction:
    """``timeouts_in_a_row`` counts this timeout (1 for the first since the caller spoke)."""
    if timeouts_in_a_row > policy.max_prompts:
        return SilenceAction("end_call", policy.goodbye_instructions)
    return SilenceAction("wait" if policy.service_responds else "prompt")
