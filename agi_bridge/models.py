"""Model names in one place: the session defaults and the models OpenAI has announced it
will shut down. (Which model a call uses: ``Config.model_for``.)

Sources (read in the stored references, not from memory):

- openai-python ``src/openai/types/realtime/audio_transcription_param.py`` (Aug 2026):
  the Realtime input-transcription models are ``whisper-1``, ``gpt-transcribe``,
  ``gpt-live-transcribe``, ``gpt-4o-mini-transcribe`` (+ ``-2025-12-15``),
  ``gpt-4o-transcribe``, ``gpt-4o-transcribe-diarize``, ``gpt-realtime-whisper``.
- The shutdown date 2027-02-26 of ``whisper-1``, ``gpt-4o-transcribe``,
  ``gpt-4o-mini-transcribe`` and ``gpt-4o-transcribe-diarize``, with the replacement
  "gpt-live-transcribe or gpt-transcribe" (``gpt-live-transcribe`` for live audio), is
  what the issue states and what several summaries of OpenAI's deprecations page say
  (developersdigest.tech, dev.to); the rows themselves were NOT visible in the stored
  copy of developers.openai.com/api/docs/deprecations. ``check`` therefore only *warns*,
  and the table says where each entry comes from.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

DEFAULT_REALTIME_MODEL = "gpt-realtime"
# The successor for live (streaming) transcription of the retiring gpt-4o-*-transcribe
# models; accepted in a Realtime session's audio.input.transcription.model (SDK types).
DEFAULT_TRANSCRIPTION_MODEL = "gpt-live-transcribe"
DEFAULT_VOICE = "marin"


@dataclass(frozen=True, slots=True)
class Retirement:
    model: str
    shutdown: dt.date
    successor: str
    source: str


_TRANSCRIBE_SOURCE = (
    "OpenAI deprecations notice of 2026-08-26 as quoted by third-party summaries "
    "(not seen on OpenAI's page in the stored references)"
)
RETIREMENTS: dict[str, Retirement] = {
    r.model: r
    for r in (
        Retirement("whisper-1", dt.date(2027, 2, 26), "gpt-live-transcribe", _TRANSCRIBE_SOURCE),
        Retirement(
            "gpt-4o-transcribe", dt.date(2027, 2, 26), "gpt-live-transcribe", _TRANSCRIBE_SOURCE
        ),
        Retirement(
            "gpt-4o-mini-transcribe",
            dt.date(2027, 2, 26),
            "gpt-live-transcribe",
            _TRANSCRIBE_SOURCE,
        ),
        Retirement(
            "gpt-4o-mini-transcribe-2025-12-15",
            dt.date(2027, 2, 26),
            "gpt-live-transcribe",
            _TRANSCRIBE_SOURCE,
        ),
        Retirement(
            "gpt-4o-transcribe-diarize",
            dt.date(2027, 2, 26),
            "gpt-live-transcribe",
            _TRANSCRIBE_SOURCE,
        ),
    )
}
