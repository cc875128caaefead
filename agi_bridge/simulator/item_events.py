"""The conversation-item client events of a simulated Realtime session: create,
truncate, delete, retrieve (a mixin of ``SimSession``, split out to keep modules small).

Truncation is validated like the service: only assistant audio, content 0, and never past
the audio produced ("already shorter than"); the context then keeps only what was heard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agi_bridge.simulator.conversation import Conversation, item_from_client
from agi_bridge.simulator.events import event
from agi_bridge.simulator.schema import SchemaError


@dataclass(frozen=True, slots=True)
class Limits:
    max_records: int = 10_000
    keep_caller_audio_ms: int = 60_000
    max_items: int = 2048


def append_capped(records: list[Any], entry: Any, cap: int) -> None:
    """Keep the newest ``cap`` entries; trim in batches so appending stays O(1) amortised."""
    records.append(entry)
    if len(records) > cap:
        del records[: len(records) - cap + max(1, cap // 10)]


class ItemEvents:
    """Handlers for ``conversation.item.*`` client events; state lives in SimSession."""

    conversation: Conversation
    function_outputs: list[dict[str, Any]]
    truncates: list[dict[str, Any]]
    last_output: str | None
    _calls: dict[str, str]
    _limits: Limits
    _caller_spoke: bool

    async def send(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def register_call(self, call_id: str, name: str) -> None:
        raise NotImplementedError

    async def _on_item_create(self, obj: dict[str, Any], _eid: str | None) -> None:
        raw = obj.get("item")
        if not isinstance(raw, dict):
            raise SchemaError(
                "invalid_type", "Invalid type for 'item': expected an object.", "item"
            )
        previous_id = obj.get("previous_item_id")
        if previous_id not in (None, "root") and previous_id not in self.conversation:
            raise SchemaError(
                "invalid_value",
                f"Invalid 'previous_item_id': no item with id '{previous_id}' was found.",
                "previous_item_id",
            )
        item = item_from_client(raw, self._calls)
        if item.type == "function_call":
            self.register_call(item.call_id, item.name)
        if item.id in self.conversation:
            raise SchemaError(
                "invalid_value", f"Item with id '{item.id}' already exists.", "item.id"
            )
        if item.type == "function_call_output":
            append_capped(
                self.function_outputs,
                {
                    "call_id": item.call_id,
                    "name": self._calls[item.call_id],
                    "output": item.output,
                    "item_id": item.id,
                },
                self._limits.max_records,
            )
            self.last_output = item.output
        elif item.role == "user":
            self._caller_spoke = True
        previous = self.conversation.add(item)
        await self.send(
            event("conversation.item.added", previous_item_id=previous, item=item.to_json())
        )
        await self.send(
            event("conversation.item.done", previous_item_id=previous, item=item.to_json())
        )

    async def _on_truncate(self, obj: dict[str, Any], _eid: str | None) -> None:
        item_id, content_index, end = (
            obj.get("item_id"),
            obj.get("content_index"),
            obj.get("audio_end_ms"),
        )
        if not isinstance(item_id, str):
            raise SchemaError(
                "missing_required_parameter", "Missing required parameter: 'item_id'.", "item_id"
            )
        if not isinstance(end, int) or isinstance(end, bool) or end < 0:
            raise SchemaError(
                "invalid_value", "Invalid 'audio_end_ms': expected an integer >= 0.", "audio_end_ms"
            )
        item = self.conversation.get(item_id)
        if item is None:
            raise SchemaError(
                "item_truncate_invalid_item_id",
                f"Item with item_id not found: {item_id}",
                "item_id",
            )
        if item.content_type != "output_audio":
            raise SchemaError(
                "invalid_value", "Only assistant messages with audio can be truncated.", "item_id"
            )
        if content_index != 0:
            raise SchemaError(
                "invalid_value",
                f"Invalid 'content_index': no audio content at {content_index!r}.",
                "content_index",
            )
        produced = int(item.produced_ms)
        if end > produced:
            raise SchemaError(
                "invalid_value",
                f"Audio content of {produced}ms is already shorter than {end}ms",
                "audio_end_ms",
            )
        item.audio_ms = end  # the context now holds only what the caller heard
        item.stop_audio = item.streaming
        append_capped(
            self.truncates,
            {
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": end,
                "produced_ms": produced,
                "while_streaming": item.streaming,
            },
            self._limits.max_records,
        )
        await self.send(
            event("conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=end)
        )

    async def _on_item_delete(self, obj: dict[str, Any], _eid: str | None) -> None:
        item_id = obj.get("item_id")
        if not isinstance(item_id, str) or not self.conversation.delete(item_id):
            raise SchemaError(
                "item_delete_invalid_item_id",
                f"Error deleting item: the item with id '{item_id}' does not exist.",
                "item_id",
            )
        await self.send(event("conversation.item.deleted", item_id=item_id))

    async def _on_item_retrieve(self, obj: dict[str, Any], _eid: str | None) -> None:
        item_id = obj.get("item_id")
        item = self.conversation.get(item_id) if isinstance(item_id, str) else None
        if item is None:
            raise SchemaError(
                "item_retrieve_invalid_item_id",
                f"Item with item_id not found: {item_id}",
                "item_id",
            )
        await self.send(event("conversation.item.retrieved", item=item.to_json()))
