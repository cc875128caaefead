"""JSON for the Realtime GA and GPT-Live codecs: typed reads of server event fields (a field
of the wrong type reads as empty, so a new or odd server event never breaks a call), and the
compact encoding of client events with a fast path for the audio appends."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from agi_bridge.errors import RealtimeProtocolError


def text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def integer(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def mapping(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def event_object(message: str | bytes, protocol: str) -> tuple[dict[str, Any], str]:
    """A server message as (object, type); RealtimeProtocolError naming ``protocol`` when it
    is not JSON or not an object with a string ``type``."""
    try:
        obj = json.loads(message)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RealtimeProtocolError(f"{protocol} message is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise RealtimeProtocolError(f"{protocol} message is not an object with a string 'type'")
    return obj, obj["type"]


def audio(obj: dict[str, Any], key: str, kind: str) -> bytes:
    """The base64 audio of ``obj[key]``; RealtimeProtocolError naming the event otherwise."""
    try:
        return base64.b64decode(text(obj, key), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RealtimeProtocolError(f"{kind}: {key} is not base64: {exc}") from exc


class Base64Text(str):
    """Base64 text made by ``base64_text``: its alphabet needs no JSON escaping."""

    __slots__ = ()


def base64_text(data: bytes) -> Base64Text:
    return Base64Text(base64.b64encode(data).decode("ascii"))


def encode_event(event: dict[str, Any]) -> str:
    """A client event as compact JSON.

    An audio append (``type`` + ``audio`` made by ``base64_text``) is joined as text: a
    call sends 25 of them a second, and ``json.dumps`` spent most of its time scanning the
    base64 for characters to escape, which it cannot contain."""
    if len(event) == 2:
        kind, audio = event.get("type"), event.get("audio")
        if type(audio) is Base64Text and isinstance(kind, str):
            return '{"type":' + json.dumps(kind) + ',"audio":"' + audio + '"}'
    return json.dumps(event, separators=(",", ":"))
