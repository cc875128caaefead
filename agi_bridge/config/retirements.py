"""Warnings for configured models with an announced shutdown date (the dated table is
``agi_bridge.models.RETIREMENTS``): the bridge still starts, ``check`` prints them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

import yaml

from agi_bridge.config.schema import Config
from agi_bridge.models import RETIREMENTS


def retirement_warnings(
    cfg: Config, today: dt.date, locate: Callable[[str], str] = lambda key: key
) -> list[str]:
    """One line per configured model with a known shutdown date (past or future);
    ``locate`` turns a key path into what the line starts with (``file:line key``)."""
    uses: list[tuple[str, str]] = [("realtime.model", cfg.realtime.model)]
    for name, agent in cfg.agents.items():
        if agent.model:
            uses.append((f"agents.{name}.model", agent.model))
        if agent.transcription_model:
            uses.append((f"agents.{name}.transcription_model", agent.transcription_model))
    lines = []
    for key, model in uses:
        r = RETIREMENTS.get(model)
        if r is None:
            continue
        when = "shut down on" if r.shutdown <= today else "shuts down on"
        line = (
            f"{locate(key)}: {model} {when} {r.shutdown.isoformat()}; successor {r.successor} "
            f"(source: {r.source})"
        )
        if line not in lines:  # agents inheriting one `defaults:` key: said once
            lines.append(line)
    return lines


def locator(
    file: str, nodes: Mapping[str, yaml.Node], inherited: Mapping[int, str]
) -> Callable[[str], str]:
    """``key path -> "file:line key"``; an agent key inherited from ``defaults:`` is named
    where defaults sets it, a key not in the file (a built-in default) by its path."""

    def where(path: str) -> str:
        node = nodes.get(path)
        if node is None:
            return path
        return f"{file}:{node.start_mark.line + 1} {inherited.get(id(node)) or path}"

    return where
