"""Config rules of the GPT-Live provider (``realtime.provider: gpt-live``)."""

from __future__ import annotations

from collections.abc import Callable

from agi_bridge.config.schema import Config
from agi_bridge.errors import ConfigError


def check_gpt_live(
    cfg: Config,
    fail: Callable[[str, str], ConfigError],
    warn: Callable[[str, str], None],
) -> None:
    """Tools need a backend model; a Realtime model name is most likely a mistake."""
    if cfg.realtime.provider != "gpt-live":
        return
    with_tools = [name for name, agent in cfg.agents.items() if agent.tools]
    if with_tools and not cfg.realtime.backend_model:
        raise fail(
            "realtime.provider",  # the line that asked for GPT-Live
            "GPT-Live runs tools on a backend Responses model: set realtime.backend_model "
            f"(agents with tools: {', '.join(with_tools)})",
        )
    models = {"realtime.model": cfg.realtime.model}
    models.update({f"agents.{n}.model": a.model for n, a in cfg.agents.items() if a.model})
    for key, model in models.items():
        if not model.startswith("gpt-live"):
            warn(key, f"{model!r} is not a GPT-Live model (e.g. gpt-live-1)")
