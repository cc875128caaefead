"""realtime.provider: gpt-live: the backend model for tools, and a model-name warning."""

from __future__ import annotations

import pytest

from agi_bridge.config import load_text
from agi_bridge.errors import ConfigError


def test_tools_need_a_backend_model() -> None:
    with pytest.raises(ConfigError) as info:
        load_text("realtime:\n  provider: gpt-live\n  model: gpt-live-1\n", "g.yaml")
    assert str(info.value).startswith(
        "g.yaml:2 realtime.provider: GPT-Live runs tools on a backend Responses model: "
        "set realtime.backend_model (agents with tools: default)"
    )
    cfg = load_text(
        "realtime:\n  provider: gpt-live\n  model: gpt-live-1\n  backend_model: gpt-5.5\n",
        "g.yaml",
    )
    assert cfg.realtime.backend_model == "gpt-5.5" and cfg.warnings == ()
    # no tools: nothing to delegate, no backend needed
    load_text(
        "realtime: {provider: gpt-live, model: gpt-live-1}\nagents: {default: {tools: []}}\n",
        "g.yaml",
    )


def test_a_realtime_model_name_with_gpt_live_is_a_warning_with_its_line() -> None:
    cfg = load_text(
        "realtime:\n  provider: gpt-live\n  model: gpt-realtime\n  backend_model: gpt-5.5\n",
        "g.yaml",
    )
    assert cfg.warnings == (
        "g.yaml:3 realtime.model: 'gpt-realtime' is not a GPT-Live model (e.g. gpt-live-1)",
    )


def test_gpt_live_needs_its_key_at_start() -> None:
    from agi_bridge.app import check_realtime_key

    cfg = load_text(
        "realtime: {provider: gpt-live, model: gpt-live-1}\nagents: {default: {tools: []}}\n",
        "g.yaml",
    )
    with pytest.raises(ConfigError, match="no GPT-Live key: OPENAI_API_KEY is not set"):
        check_realtime_key(cfg, env={})
    check_realtime_key(cfg, env={"OPENAI_API_KEY": "sk-x"})
