"""The provider session an agent asks for: µ-law both ways, today's date, IVR guidance.

One source for session defaults (the agent's config) and model resolution
(``Config.model_for``)."""

from __future__ import annotations

import datetime as dt

from agi_bridge.config import Agent, Config
from agi_bridge.protocol import realtime as rt
from agi_bridge.tools import IVR_GUIDANCE, ToolSet


def build_session(cfg: Config, agent: Agent, tools: ToolSet, today: dt.date) -> rt.SessionConfig:
    """The Realtime session for an agent: µ-law both ways, today's date, IVR guidance."""
    instructions = f"Today is {today:%A, %B %d, %Y}.\n\n{agent.instructions.strip()}"
    if agent.ivr_guidance and "send_dtmf" in tools.tools:
        instructions += "\n\n" + IVR_GUIDANCE
    td = agent.turn_detection
    turn: rt.TurnDetection
    if td.type == "server_vad":
        turn = rt.ServerVad(
            threshold=td.threshold,
            prefix_padding_ms=td.prefix_padding_ms,
            silence_duration_ms=td.silence_duration_ms,
            idle_timeout_ms=td.idle_timeout_ms,
            interrupt_response=td.interrupt_response,
        )
    elif td.type == "semantic_vad":
        turn = rt.SemanticVad(eagerness=td.eagerness, interrupt_response=td.interrupt_response)
    else:
        turn = None
    return rt.SessionConfig(
        model=cfg.model_for(agent),
        instructions=instructions,
        voice=agent.voice,
        speed=agent.speed,
        turn_detection=turn,
        transcription_model=agent.transcription_model or None,
        transcription_language=agent.language or None,
        noise_reduction=agent.noise_reduction or None,
        max_output_tokens=agent.max_output_tokens,
        tools=tools.schemas(),
        reasoning_effort=agent.reasoning_effort or None,
        parallel_tool_calls=agent.parallel_tool_calls,
        truncation=agent.truncation or None,
        truncation_retention_ratio=agent.truncation_retention_ratio,
    )
