"""session.update is validated like the GA service: beta shapes fail, GA shapes merge."""

from __future__ import annotations

from typing import Any

import pytest

from agi_bridge.simulator import Simulator
from tests.simulator.helpers import PCMU_SESSION, open_client


@pytest.mark.parametrize(
    "field, value",
    [
        ("modalities", ["audio", "text"]),
        ("input_audio_format", "g711_ulaw"),
        ("output_audio_format", "g711_ulaw"),
        ("input_audio_transcription", {"model": "whisper-1"}),
        ("temperature", 0.8),
        ("voice", "alloy"),
        ("turn_detection", {"type": "server_vad"}),
    ],
)
async def test_beta_fields_are_unknown_parameters(sim: Simulator, field: str, value: Any) -> None:
    client = await open_client(sim.url)
    await client.send(
        "session.update", event_id="evt_1", session={"type": "realtime", field: value}
    )
    error = (await client.expect("error"))["error"]
    assert error == {
        "type": "invalid_request_error",
        "code": "unknown_parameter",
        "message": f"Unknown parameter: 'session.{field}'.",
        "param": f"session.{field}",
        "event_id": "evt_1",
    }
    assert sim.sessions[0].session["audio"]["input"]["format"]["type"] == "audio/pcm"  # unchanged
    await client.ws.close()


async def test_pcmu_is_accepted_and_merged(sim: Simulator) -> None:
    client = await open_client(sim.url)
    session = (await client.update(PCMU_SESSION))["session"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["voice"] == "alloy"  # kept from before
    # A second update touches only what it names.
    session = (
        await client.update(
            {
                "type": "realtime",
                "instructions": "Be brief.",
                "audio": {
                    "input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}},
                    "output": {"voice": "marin"},
                },
            }
        )
    )["session"]
    assert session["instructions"] == "Be brief."
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "high",
        "create_response": True,
        "interrupt_response": True,
    }
    assert session["audio"]["output"]["voice"] == "marin"
    assert sim.sessions[0].session == session
    await client.ws.close()


@pytest.mark.parametrize(
    "session, code, param",
    [
        ({}, "missing_required_parameter", "session.type"),
        ({"type": "transcription"}, "invalid_value", "session.type"),
        (
            {"type": "realtime", "audio": {"input": {"format": {"type": "audio/wav"}}}},
            "invalid_value",
            "session.audio.input.format.type",
        ),
        (
            {
                "type": "realtime",
                "audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}}},
            },
            "invalid_value",
            "session.audio.output.format.rate",
        ),
        (
            {"type": "realtime", "audio": {"output": {"voice": "nova"}}},
            "invalid_value",
            "session.audio.output.voice",
        ),
        (
            {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "loud_vad"}}}},
            "invalid_value",
            "session.audio.input.turn_detection.type",
        ),
        (
            {
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "semantic_vad", "threshold": 0.5}}},
            },
            "unknown_parameter",
            "session.audio.input.turn_detection.threshold",
        ),
        (
            {"type": "realtime", "max_output_tokens": 5000},
            "integer_above_max_value",
            "session.max_output_tokens",
        ),
        (
            {"type": "realtime", "max_output_tokens": 0},
            "integer_below_min_value",
            "session.max_output_tokens",
        ),
        ({"type": "realtime", "instructions": 7}, "invalid_type", "session.instructions"),
    ],
)
async def test_invalid_values(
    sim: Simulator, session: dict[str, Any], code: str, param: str
) -> None:
    client = await open_client(sim.url)
    await client.send("session.update", session=session)
    error = (await client.expect("error"))["error"]
    assert (error["code"], error["param"]) == (code, param)
    await client.ws.close()


async def test_turn_detection_null_and_inf_tokens(sim: Simulator) -> None:
    client = await open_client(sim.url)
    session = (
        await client.update(
            {
                "type": "realtime",
                "max_output_tokens": "inf",
                "audio": {"input": {"turn_detection": None}},
            }
        )
    )["session"]
    assert session["audio"]["input"]["turn_detection"] is None
    assert session["max_output_tokens"] == "inf"
    await client.ws.close()
