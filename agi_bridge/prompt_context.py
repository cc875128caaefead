"""Per-call context in prompts: ``{caller_id}``, ``{dnid}``, channel variables and
``--var key=value`` substituted into an agent's instructions and greeting.

Safe by construction: one pass of a regular expression over ``{name}`` placeholders, not
``str.format`` (no attribute or index access, no format specs, so ``{0.__class__}`` in a
prompt or a value is inert text); a placeholder with no value is left as written (a JSON
example in a prompt keeps its braces); a substituted value is never expanded again, so a
caller ID such as ``{dnid}`` stays literal. Values are cut to ``MAX_VALUE_CHARS``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")
MAX_VALUE_CHARS = 1000  # a value longer than this is cut (a prompt is not a data dump)
VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


def substitute(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each ``{name}`` whose name is in ``values`` replaced."""

    def one(match: re.Match[str]) -> str:
        value = values.get(match[1])
        return match[0] if value is None else str(value)[:MAX_VALUE_CHARS]

    return PLACEHOLDER.sub(one, template)


def prompt_context(
    caller_id: str, dnid: str, variables: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The values of a call: its variables, then ``caller_id`` and ``dnid`` (which a
    variable of the same name does not override)."""
    values = dict(variables or {})
    values["caller_id"] = caller_id
    values["dnid"] = dnid
    return values


def parse_var(text: str) -> tuple[str, str]:
    """``--var key=value`` -> ``(key, value)``; raises ValueError saying what is wrong."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    if not VAR_NAME.match(key):
        raise ValueError(f"invalid variable name {key!r}: letters, digits and '_'")
    return key, value
