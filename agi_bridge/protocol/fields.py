"""Typed reads of JSON object fields for the event parsers (Realtime GA, GPT-Live): a field
of the wrong type reads as empty, so a new or odd server event never breaks a call."""

from __future__ import annotations

from typing import Any


def text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def integer(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def mapping(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}
