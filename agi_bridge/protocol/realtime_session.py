"""The Realtime GA session object the bridge asks for (``session.update``), sans-I/O.

Field names and value sets as the GA schema names them (openai-python
``types/realtime/realtime_session_create_request_param.py`` and the types it refers to).
Re-exported by ``agi_bridge.protocol.realtime``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from agi_bridge.models import DEFAULT_REALTIME_MODEL, DEFAULT_TRANSCRIPTION_MODEL, DEFAULT_VOICE

# Built-in voices (openai-python types/realtime/realtime_audio_config_output_param.py). The
# SDK types ``voice`` as ``str | Literal[...]``: other names are not rejected here.
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
VOICE_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}")  # what a new voice name plausibly is
# openai-python types/realtime/realtime_reasoning_effort.py
REASONING_EFFORTS = ("minimal", "low", "medium", "high", "xhigh")
# openai-python types/realtime/realtime_truncation.py: "auto" | "disabled" | retention_ratio
TRUNCATIONS = ("auto", "disabled")
EAGERNESS = ("low", "medium", "high", "auto")
NOISE_REDUCTION = ("near_field", "far_field")
AUDIO_FORMAT = "audio/pcmu"  # G.711 µ-law at 8 kHz: what the phone network carries


# ---------------------------------------------------------------------------- session


@dataclass(frozen=True, slots=True)
class ServerVad:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    idle_timeout_ms: int | None = None
    create_response: bool = True
    interrupt_response: bool = True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "server_vad",
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        }
        if self.idle_timeout_ms is not None:
            out["idle_timeout_ms"] = self.idle_timeout_ms
        return out


@dataclass(frozen=True, slots=True)
class SemanticVad:
    eagerness: str = "auto"
    create_response: bool = True
    interrupt_response: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "semantic_vad",
            "eagerness": self.eagerness,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        }


TurnDetection = ServerVad | SemanticVad | None


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What the bridge asks of a Realtime session (GA ``session.update``)."""

    model: str = DEFAULT_REALTIME_MODEL
    instructions: str = ""
    voice: str = DEFAULT_VOICE
    speed: float = 1.0
    turn_detection: TurnDetection = field(default_factory=SemanticVad)
    transcription_model: str | None = DEFAULT_TRANSCRIPTION_MODEL
    transcription_language: str | None = None
    noise_reduction: str | None = None
    max_output_tokens: int | Literal["inf"] = "inf"
    tools: tuple[dict[str, Any], ...] = ()
    # gpt-realtime-2 session fields (openai-python types/realtime/
    # realtime_session_create_request_param.py: reasoning, parallel_tool_calls, truncation);
    # None = not sent, the service default applies.
    reasoning_effort: str | None = None
    parallel_tool_calls: bool | None = None
    truncation: str | None = None  # "auto" | "disabled"
    truncation_retention_ratio: float | None = None  # {"type": "retention_ratio", ...}


def session_update(cfg: SessionConfig) -> dict[str, Any]:
    """``session.update`` in the GA shape: µ-law in and out, so no resampling anywhere."""
    audio_in: dict[str, Any] = {
        "format": {"type": AUDIO_FORMAT},
        "turn_detection": cfg.turn_detection.to_json() if cfg.turn_detection else None,
    }
    if cfg.transcription_model:
        transcription: dict[str, Any] = {"model": cfg.transcription_model}
        if cfg.transcription_language:
            transcription["language"] = cfg.transcription_language
        audio_in["transcription"] = transcription
    if cfg.noise_reduction:
        audio_in["noise_reduction"] = {"type": cfg.noise_reduction}
    session: dict[str, Any] = {
        "type": "realtime",
        "model": cfg.model,
        "instructions": cfg.instructions,
        "output_modalities": ["audio"],
        "audio": {
            "input": audio_in,
            "output": {"format": {"type": AUDIO_FORMAT}, "voice": cfg.voice, "speed": cfg.speed},
        },
        "max_output_tokens": cfg.max_output_tokens,
    }
    if cfg.reasoning_effort:
        session["reasoning"] = {"effort": cfg.reasoning_effort}
    if cfg.parallel_tool_calls is not None:
        session["parallel_tool_calls"] = cfg.parallel_tool_calls
    if cfg.truncation_retention_ratio is not None:
        session["truncation"] = {
            "type": "retention_ratio",
            "retention_ratio": cfg.truncation_retention_ratio,
        }
    elif cfg.truncation:
        session["truncation"] = cfg.truncation
    # always sent, even empty: a session.update without "tools" keeps the previous agent's
    # tools on the service side (switch_agent to an agent with fewer tools)
    session["tools"] = list(cfg.tools)
    if cfg.tools:
        session["tool_choice"] = "auto"
    return {"type": "session.update", "session": session}
