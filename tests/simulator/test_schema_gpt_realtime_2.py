"""gpt-realtime-2 session fields: the simulator knows their GA names and types exactly."""

from __future__ import annotations

from typing import Any

import pytest

from agi_bridge.protocol import realtime as rt
from agi_bridge.simulator.schema import SchemaError, apply_session_update, default_session


def _apply(update: dict[str, Any]) -> dict[str, Any]:
    base = default_session("sess_1", "gpt-realtime-2", 3_600_000)
    return apply_session_update(base, update, has_assistant_audio=False)


def test_the_bridge_session_update_is_accepted() -> None:
    cfg = rt.SessionConfig(
        model="gpt-realtime-2",
        reasoning_effort="xhigh",
        parallel_tool_calls=True,
        truncation_retention_ratio=0.75,
    )
    merged = _apply(rt.session_update(cfg)["session"])
    assert merged["reasoning"] == {"effort": "xhigh"}
    assert merged["parallel_tool_calls"] is True
    assert merged["truncation"] == {"type": "retention_ratio", "retention_ratio": 0.75}
    assert _apply({"type": "realtime", "truncation": "disabled"})["truncation"] == "disabled"


@pytest.mark.parametrize(
    "update, code, param",
    [
        ({"reasoning_effort": "low"}, "unknown_parameter", "session.reasoning_effort"),
        ({"reasoning": {"effort": "max"}}, "invalid_value", "session.reasoning.effort"),
        ({"reasoning": "low"}, "invalid_type", "session.reasoning"),
        ({"reasoning": {"summary": "auto"}}, "unknown_parameter", "session.reasoning.summary"),
        ({"parallel_tool_calls": "yes"}, "invalid_type", "session.parallel_tool_calls"),
        ({"truncation": "sometimes"}, "invalid_value", "session.truncation"),
        (
            {"truncation": {"type": "ratio", "retention_ratio": 0.5}},
            "invalid_value",
            "session.truncation.type",
        ),
        (
            {"truncation": {"type": "retention_ratio"}},
            "missing_required_parameter",
            "session.truncation.retention_ratio",
        ),
        (
            {"truncation": {"type": "retention_ratio", "retention_ratio": 1.5}},
            "decimal_above_max_value",
            "session.truncation.retention_ratio",
        ),
        (
            {"truncation": {"type": "retention_ratio", "retention_ratio": 0.5, "keep": 1}},
            "unknown_parameter",
            "session.truncation.keep",
        ),
    ],
)
def test_wrong_names_and_types_are_refused(update: dict[str, Any], code: str, param: str) -> None:
    with pytest.raises(SchemaError) as info:
        _apply({"type": "realtime", **update})
    assert (info.value.code, info.value.param) == (code, param)
