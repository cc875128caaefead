"""chan_websocket control messages (Asterisk 22 "WebSocket" channel driver), sans-I/O.

Verified in Asterisk's channels/chan_websocket.c at the 22.10.1 release commit:

- Binary websocket frames carry media in the channel's format (here µ-law, 160 bytes per
  20 ms). Asterisk re-frames what the app sends to ``optimal_frame_size`` and releases one
  frame per ``ptime`` from its own timer; a partial frame outside media buffering is
  dropped. With nothing queued it releases nothing (22.10 removed its silence generation).
  Its queue holds at most 1000 frames: ``MEDIA_XOFF`` at 900, ``MEDIA_XON`` below 800.
- Text frames carry control, in one of two formats (``chan_websocket.conf``
  ``control_message_format``, or the dial string option ``f(json)``):
  *plain-text* (the default): ``EVENT key:value key:value``, commands ``COMMAND [arg]``;
  *json*: ``{"event": ...}`` and ``{"command": ..., "correlation_id": ...}``.
- Events from Asterisk: ``MEDIA_START connection_id channel channel_id format
  optimal_frame_size ptime`` (json adds ``channel_variables``), ``MEDIA_XOFF``,
  ``MEDIA_XON``, ``QUEUE_DRAINED``, ``MEDIA_BUFFERING_COMPLETED [id]``,
  ``MEDIA_MARK_PROCESSED [id]``, ``DTMF_END digit:D channel_id:ID``, ``STATUS ...``,
  ``ERROR channel_id:ID error_text:TEXT``.
- Commands to Asterisk: ``ANSWER``, ``HANGUP``, ``START_MEDIA_BUFFERING``,
  ``STOP_MEDIA_BUFFERING [id]``, ``MARK_MEDIA [id]``, ``FLUSH_MEDIA`` (drops every queued
  frame at once), ``REPORT_QUEUE_DRAINED``, ``GET_STATUS``, ``PAUSE_MEDIA``,
  ``CONTINUE_MEDIA``; ``SET_MEDIA_DIRECTION`` exists in json only. A text message longer
  than 128 bytes is ignored by Asterisk, an unknown command only logged.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field

from agi_bridge.errors import RtpError

MAX_COMMAND_BYTES = 128  # chan_websocket.c MAX_TEXT_MESSAGE_LEN: longer ones are ignored
MAX_EVENT_BYTES = 65536  # MEDIA_START in json carries every channel variable
QUEUE_LENGTH_MAX = 1000  # frames Asterisk queues from the app before dropping input


class MessageFormat(enum.Enum):
    PLAIN_TEXT = "plain-text"
    JSON = "json"


class Command(enum.Enum):
    ANSWER = "ANSWER"
    HANGUP = "HANGUP"
    START_MEDIA_BUFFERING = "START_MEDIA_BUFFERING"
    STOP_MEDIA_BUFFERING = "STOP_MEDIA_BUFFERING"
    MARK_MEDIA = "MARK_MEDIA"
    FLUSH_MEDIA = "FLUSH_MEDIA"
    REPORT_QUEUE_DRAINED = "REPORT_QUEUE_DRAINED"
    GET_STATUS = "GET_STATUS"
    PAUSE_MEDIA = "PAUSE_MEDIA"
    CONTINUE_MEDIA = "CONTINUE_MEDIA"


# Commands whose plain-text form takes the correlation id as its argument.
_WITH_ID = {Command.STOP_MEDIA_BUFFERING, Command.MARK_MEDIA}


def serialize_command(
    command: Command, fmt: MessageFormat, correlation_id: str | None = None
) -> str:
    """The text frame for ``command``. Raises RtpError if Asterisk would ignore it."""
    if correlation_id is not None and command not in _WITH_ID:
        raise RtpError(f"chan_websocket {command.value} takes no correlation id")
    if correlation_id is not None and (not correlation_id or " " in correlation_id):
        raise RtpError(f"chan_websocket correlation id must be one word: {correlation_id!r}")
    if fmt is MessageFormat.JSON:
        body: dict[str, str] = {"command": command.value}
        if correlation_id is not None:
            body["correlation_id"] = correlation_id
        text = json.dumps(body, separators=(",", ":"))
    else:
        text = command.value if correlation_id is None else f"{command.value} {correlation_id}"
    if len(text.encode()) > MAX_COMMAND_BYTES:
        raise RtpError(f"chan_websocket command too long: {len(text)} > {MAX_COMMAND_BYTES} bytes")
    return text


# ---------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class MediaStart:
    connection_id: str
    channel: str
    channel_id: str
    format: str
    optimal_frame_size: int
    ptime: int
    channel_variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MediaXoff:
    """Asterisk's queue from the app reached its high-water mark: stop sending."""


@dataclass(frozen=True, slots=True)
class MediaXon:
    """The queue drained below the low-water mark: sending may resume."""


@dataclass(frozen=True, slots=True)
class QueueDrained:
    pass


@dataclass(frozen=True, slots=True)
class BufferingCompleted:
    correlation_id: str


@dataclass(frozen=True, slots=True)
class MarkProcessed:
    """Every frame queued before the MARK_MEDIA with this id has been played."""

    correlation_id: str


@dataclass(frozen=True, slots=True)
class DtmfEnd:
    digit: str


@dataclass(frozen=True, slots=True)
class Status:
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Error:
    text: str


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event this version does not know; logged and ignored (forward compatible)."""

    name: str


ControlEvent = (
    MediaStart
    | MediaXoff
    | MediaXon
    | QueueDrained
    | BufferingCompleted
    | MarkProcessed
    | DtmfEnd
    | Status
    | Error
    | UnknownEvent
)


def parse_event(text: str) -> ControlEvent:
    """Parse one text frame from Asterisk; the format is recognised from the first byte."""
    if len(text) > MAX_EVENT_BYTES:
        raise RtpError(f"chan_websocket event too long: {len(text)} > {MAX_EVENT_BYTES} bytes")
    text = text.strip()
    if not text:
        raise RtpError("chan_websocket event is empty")
    if text.startswith("{"):
        return _parse_json(text)
    return _parse_plain(text)


def _parse_plain(text: str) -> ControlEvent:
    name, _, rest = text.partition(" ")
    if name == "ERROR":
        # error_text is free text with spaces: it is the rest of the line.
        _, _, error_text = rest.partition("error_text:")
        return Error(error_text or rest)
    if name in ("MEDIA_BUFFERING_COMPLETED", "MEDIA_MARK_PROCESSED"):
        cls = BufferingCompleted if name == "MEDIA_BUFFERING_COMPLETED" else MarkProcessed
        return cls(rest.strip())
    fields: dict[str, str] = {}
    for token in rest.split():
        key, sep, value = token.partition(":")
        if not sep:
            raise RtpError(f"chan_websocket {name}: field without ':' in {token!r}")
        fields[key] = value
    return _from_fields(name, fields, {})


def _parse_json(text: str) -> ControlEvent:
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise RtpError(f"chan_websocket event is not valid JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("event"), str):
        raise RtpError("chan_websocket JSON event has no string 'event'")
    name: str = body["event"]
    if name == "ERROR":
        return Error(str(body.get("error_text", "")))
    if name == "MEDIA_BUFFERING_COMPLETED":
        return BufferingCompleted(str(body.get("correlation_id", "")))
    if name == "MEDIA_MARK_PROCESSED":
        return MarkProcessed(str(body.get("correlation_id", "")))
    variables = body.get("channel_variables", {})
    if not isinstance(variables, dict):
        raise RtpError("chan_websocket MEDIA_START channel_variables is not an object")
    fields = {k: str(v) for k, v in body.items() if k not in ("event", "channel_variables")}
    return _from_fields(name, fields, {str(k): str(v) for k, v in variables.items()})


def _from_fields(name: str, fields: dict[str, str], variables: dict[str, str]) -> ControlEvent:
    if name == "MEDIA_START":
        try:
            return MediaStart(
                connection_id=fields["connection_id"],
                channel=fields.get("channel", ""),
                channel_id=fields.get("channel_id", ""),
                format=fields["format"],
                optimal_frame_size=int(fields["optimal_frame_size"]),
                ptime=int(fields["ptime"]),
                channel_variables=variables,
            )
        except KeyError as exc:
            raise RtpError(f"chan_websocket MEDIA_START lacks {exc.args[0]}") from exc
        except ValueError as exc:
            raise RtpError(f"chan_websocket MEDIA_START has a bad number: {exc}") from exc
    if name == "MEDIA_XOFF":
        return MediaXoff()
    if name == "MEDIA_XON":
        return MediaXon()
    if name == "QUEUE_DRAINED":
        return QueueDrained()
    if name == "DTMF_END":
        digit = fields.get("digit", "")
        if len(digit) != 1:
            raise RtpError(f"chan_websocket DTMF_END digit must be one character: {digit!r}")
        return DtmfEnd(digit)
    if name == "STATUS":
        return Status(fields)
    return UnknownEvent(name)
