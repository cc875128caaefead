"""AMI messages as the bridge sees them: headers in order, looked up case-insensitively."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["AmiMessage", "EventCallback"]


@dataclass(frozen=True)
class AmiMessage:
    """An AMI response or event: its headers in order, looked up case-insensitively."""

    headers: tuple[tuple[str, str], ...]

    @classmethod
    def from_panoramisk(cls, message: Any) -> AmiMessage:
        items: list[tuple[str, str]] = []
        for key, value in message.items():
            if key == "content" and not value:
                continue  # panoramisk stores the (usually empty) body as a header
            if isinstance(value, list):
                items.extend((str(key), str(v)) for v in value)
            else:
                items.append((str(key), str(value)))
        return cls(tuple(items))

    def get(self, key: str, default: str = "") -> str:
        """The first value of header *key* (any case), or *default*."""
        wanted = key.lower()
        for name, value in self.headers:
            if name.lower() == wanted:
                return value
        return default

    def get_all(self, key: str) -> list[str]:
        """Every value of a repeated header (e.g. ``ChanVariable``)."""
        wanted = key.lower()
        return [value for name, value in self.headers if name.lower() == wanted]

    def __getitem__(self, key: str) -> str:
        sentinel = "\0"
        value = self.get(key, sentinel)
        if value is sentinel:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(self.get_all(key))

    @property
    def event(self) -> str:
        """Event name (``Hangup``, ``DTMFEnd`` ...), ``""`` for a response."""
        return self.get("Event")

    @property
    def response(self) -> str:
        return self.get("Response")

    @property
    def message(self) -> str:
        return self.get("Message")

    @property
    def action_id(self) -> str:
        return self.get("ActionID")


EventCallback = Callable[[AmiMessage], None]
