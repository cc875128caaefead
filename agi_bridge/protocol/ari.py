"""ARI event shapes (Asterisk REST Interface, rest-api/api-docs/events.json), sans-I/O.

One JSON text message of the events websocket in, one typed event out. Only what the
bridge acts on is typed; every other event type becomes :class:`UnknownEvent` (ARI grows
new events; a bridge must not break on them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agi_bridge.errors import ProtocolError

MAX_EVENT_BYTES = 1 << 20  # one ARI event; a channel with many variables stays far below


class AriProtocolError(ProtocolError):
    """An ARI event that is not a JSON object with the fields its type requires."""


@dataclass(frozen=True, slots=True)
class Channel:
    """The parts of ARI's Channel model the bridge uses."""

    id: str
    name: str = ""
    state: str = ""
    caller_number: str = ""
    caller_name: str = ""
    context: str = ""
    exten: str = ""
    channelvars: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StasisStart:
    channel: Channel
    args: tuple[str, ...]
    application: str = ""


@dataclass(frozen=True, slots=True)
class StasisEnd:
    channel: Channel


@dataclass(frozen=True, slots=True)
class ChannelDestroyed:
    channel: Channel
    cause: int = 0
    cause_txt: str = ""


@dataclass(frozen=True, slots=True)
class ChannelHangupRequest:
    channel: Channel
    cause: int = 0


@dataclass(frozen=True, slots=True)
class ChannelDtmfReceived:
    channel: Channel
    digit: str
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class ApplicationReplaced:
    """Another websocket registered this application: Asterisk sends it the events now
    (one websocket per application; the newer one wins)."""

    application: str = ""


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    type: str


AriEvent = (
    StasisStart
    | StasisEnd
    | ChannelDestroyed
    | ChannelHangupRequest
    | ChannelDtmfReceived
    | ApplicationReplaced
    | UnknownEvent
)


def parse_channel(data: Any) -> Channel:
    """ARI's Channel object (also what GET /channels returns, one per element)."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        raise AriProtocolError("ARI channel object without a string 'id'")
    caller = _object(data.get("caller"))
    dialplan = _object(data.get("dialplan"))
    variables = _object(data.get("channelvars"))
    return Channel(
        id=data["id"],
        name=str(data.get("name", "")),
        state=str(data.get("state", "")),
        caller_number=str(caller.get("number", "")),
        caller_name=str(caller.get("name", "")),
        context=str(dialplan.get("context", "")),
        exten=str(dialplan.get("exten", "")),
        channelvars={str(k): str(v) for k, v in variables.items()},
    )


def parse_event(text: str | bytes) -> AriEvent:
    """Parse one events-websocket message. Raises AriProtocolError naming the problem."""
    if len(text) > MAX_EVENT_BYTES:
        raise AriProtocolError(f"ARI event too large: {len(text)} > {MAX_EVENT_BYTES} bytes")
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise AriProtocolError(f"ARI event is not valid JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise AriProtocolError("ARI event is not an object with a string 'type'")
    kind: str = body["type"]
    if kind == "StasisStart":
        args = body.get("args", [])
        if not isinstance(args, list):
            raise AriProtocolError("ARI StasisStart 'args' is not a list")
        return StasisStart(
            parse_channel(body.get("channel")),
            tuple(str(a) for a in args),
            str(body.get("application", "")),
        )
    if kind == "StasisEnd":
        return StasisEnd(parse_channel(body.get("channel")))
    if kind == "ChannelDestroyed":
        return ChannelDestroyed(
            parse_channel(body.get("channel")),
            _int(body.get("cause")),
            str(body.get("cause_txt", "")),
        )
    if kind == "ChannelHangupRequest":
        return ChannelHangupRequest(parse_channel(body.get("channel")), _int(body.get("cause")))
    if kind == "ChannelDtmfReceived":
        digit = body.get("digit")
        if not isinstance(digit, str) or len(digit) != 1:
            raise AriProtocolError(
                f"ARI ChannelDtmfReceived digit must be one character: {digit!r}"
            )
        return ChannelDtmfReceived(
            parse_channel(body.get("channel")), digit, _int(body.get("duration_ms"))
        )
    if kind == "ApplicationReplaced":
        return ApplicationReplaced(str(body.get("application", "")))
    return UnknownEvent(kind)


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_stasis_args(args: tuple[str, ...]) -> tuple[str | None, dict[str, str]]:
    """``Stasis(app,AGENT,key=value,...)``: the first argument is the agent (empty: the
    default); every later ``key=value`` one is a variable. Raises on a malformed one."""
    agent = args[0].strip() if args else ""
    variables: dict[str, str] = {}
    for arg in args[1:]:
        key, sep, value = arg.partition("=")
        if not sep or not key.strip():
            raise AriProtocolError(f"Stasis argument is not key=value: {arg!r}")
        variables[key.strip()] = value
    return (agent or None), variables
