"""The server-side conversation: items in order, bounded, with what usage and truncate need."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from agi_bridge.simulator.events import new_id
from agi_bridge.simulator.schema import SchemaError
from agi_bridge.simulator.usage import Context


@dataclass(slots=True)
class ConvItem:
    id: str
    type: str  # message | function_call | function_call_output
    role: str = ""  # user | assistant | system (messages only)
    status: str = "completed"
    content_type: str = ""  # input_audio | input_text | output_audio | output_text
    text: str = ""  # input/output text, or the audio transcript
    audio_ms: float = 0.0  # caller audio in the item, or assistant audio *as heard*
    produced_ms: float = 0.0  # assistant audio actually sent (the truncate limit)
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    output: str = ""
    streaming: bool = False  # assistant audio still being sent
    stop_audio: bool = False  # truncated while streaming: send no more of it

    def to_json(self) -> dict[str, Any]:
        base: dict[str, Any] = {"id": self.id, "type": self.type, "object": "realtime.item"}
        if self.type == "function_call":
            return base | {
                "status": self.status,
                "call_id": self.call_id,
                "name": self.name,
                "arguments": self.arguments,
            }
        if self.type == "function_call_output":
            return base | {"call_id": self.call_id, "output": self.output}
        part: dict[str, Any] = {"type": self.content_type}
        if self.content_type == "input_audio":
            part["transcript"] = self.text or None
        elif self.content_type == "output_audio":
            part["transcript"] = self.text
        else:
            part["text"] = self.text
        return base | {"status": self.status, "role": self.role, "content": [part]}


class Conversation:
    """Items by id in conversation order. Bounded: the oldest are forgotten past ``limit``
    (the service truncates old context too), so an hour-long call stays small."""

    def __init__(self, limit: int = 2048):
        self._items: OrderedDict[str, ConvItem] = OrderedDict()
        self._limit = limit

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def get(self, item_id: str) -> ConvItem | None:
        return self._items.get(item_id)

    @property
    def last_id(self) -> str | None:
        return next(reversed(self._items), None)

    def add(self, item: ConvItem) -> str | None:
        """Append; return the previous item's id (the events' ``previous_item_id``)."""
        previous = self.last_id
        self._items[item.id] = item
        while len(self._items) > self._limit:
            self._items.popitem(last=False)
        return previous

    def delete(self, item_id: str) -> bool:
        return self._items.pop(item_id, None) is not None

    def context(self, instructions: str, tools_chars: int) -> Context:
        caller = assistant = 0.0
        chars = len(instructions) + tools_chars
        for item in self._items.values():
            if item.content_type == "input_audio":
                caller += item.audio_ms
            elif item.content_type == "output_audio":
                assistant += item.audio_ms
            else:
                chars += len(item.text) + len(item.arguments) + len(item.output)
        return Context(caller, assistant, chars)


def item_from_client(raw: dict[str, Any], known_calls: Collection[str]) -> ConvItem:
    """Validate a ``conversation.item.create`` item like the service; ``known_calls`` are
    the call ids a ``function_call_output`` may answer."""
    given = raw.get("id")
    item_id = given if isinstance(given, str) else new_id("item")
    kind = raw.get("type")
    if kind == "function_call_output":
        call_id, output = raw.get("call_id"), raw.get("output")
        if not isinstance(call_id, str) or not isinstance(output, str):
            raise SchemaError(
                "invalid_type",
                "'item.call_id' and 'item.output' must be strings.",
                "item.output",
            )
        if call_id not in known_calls:
            raise SchemaError(
                "invalid_value",
                f"Invalid 'item.call_id': no function call with call_id '{call_id}' was found.",
                "item.call_id",
            )
        return ConvItem(item_id, kind, call_id=call_id, output=output)
    if kind == "function_call":
        call_id, name = raw.get("call_id"), raw.get("name")
        if not isinstance(call_id, str) or not isinstance(name, str):
            raise SchemaError(
                "invalid_type", "'item.call_id' and 'item.name' must be strings.", "item"
            )
            return ConvItem(
                item_id, kind, call_id=call_id, name=name, arguments=str(raw.get("arguments", ""))
            )
    if kind != "message":
        raise SchemaError(
            "invalid_value",
            f"Invalid value: {kind!r}. Supported values are: 'message', 'function_call', "
            "and 'function_call_output'.",
            "item.type",
        )
    role = raw.get("role")
    allowed = {
        "user": ("input_text", "input_audio"),
        "system": ("input_text",),
        "assistant": ("output_text", "output_audio"),
    }
    if role not in allowed:
        raise SchemaError(
            "invalid_value",
            f"Invalid value: {role!r}. Supported values are: 'user', 'assistant', and 'system'.",
            "item.role",
        )
    content = raw.get("content")
    if (
        not isinstance(content, list)
        or not content
        or not all(isinstance(c, dict) for c in content)
    ):
        raise SchemaError(
            "invalid_type", "'item.content' must be a non-empty array.", "item.content"
        )
    part_type = content[0].get("type")
    if part_type not in allowed[role]:
        raise SchemaError(
            "invalid_value",
            f"Invalid value: {part_type!r} for a {role} message.",
            "item.content[0].type",
        )
    text = " ".join(str(c.get("text") or c.get("transcript") or "") for c in content)
    return ConvItem(item_id, "message", role=role, content_type=part_type, text=text)
