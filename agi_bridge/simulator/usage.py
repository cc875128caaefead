"""Token usage for ``response.done``, by a stated formula (the real counts are the model's).

    output audio tokens = ceil(assistant audio ms produced by this response / 50)   (20/s)
    output text tokens  = ceil(characters of its transcript + function arguments / 4)
    input audio tokens  = ceil(caller audio ms in the conversation / 100)           (10/s)
                        + ceil(assistant audio ms in the conversation / 50)  (as heard:
                          truncated items count only up to ``audio_end_ms``)
    input text tokens   = ceil(characters of instructions, tool schemas, text items,
                          function calls and outputs / 4)
    cached tokens       = what the previous response of the session read, capped per kind
                          (the service caches the conversation prefix)

The conversation is counted *before* the response (its own output is not its input), and
a response with ``conversation: "none"`` reads only the instructions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Context:
    """What a response reads, summed over the conversation."""

    caller_audio_ms: float = 0.0
    assistant_audio_ms: float = 0.0
    text_chars: int = 0

    def audio_tokens(self) -> int:
        return math.ceil(self.caller_audio_ms / 100) + math.ceil(self.assistant_audio_ms / 50)

    def text_tokens(self) -> int:
        return math.ceil(self.text_chars / 4)


def usage(
    ctx: Context, previous: Context | None, out_audio_ms: float, out_text_chars: int
) -> dict[str, Any]:
    in_audio, in_text = ctx.audio_tokens(), ctx.text_tokens()
    cached_audio = min(in_audio, previous.audio_tokens()) if previous else 0
    cached_text = min(in_text, previous.text_tokens()) if previous else 0
    out_audio = math.ceil(out_audio_ms / 50)
    out_text = math.ceil(out_text_chars / 4)
    input_tokens = in_audio + in_text
    output_tokens = out_audio + out_text
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "text_tokens": in_text,
            "audio_tokens": in_audio,
            "image_tokens": 0,
            "cached_tokens": cached_audio + cached_text,
            "cached_tokens_details": {
                "text_tokens": cached_text,
                "audio_tokens": cached_audio,
                "image_tokens": 0,
            },
        },
        "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
    }
