"""Server event envelopes: ids, ``error`` payloads, rate limits.

Ids look like the service's (``item_`` + 21 base62 characters): a bridge that parses or
logs them sees the same shapes it will see in production.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(21))


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """A server event: ``type`` and a fresh ``event_id`` first, as the service orders them."""
    return {"type": kind, "event_id": new_id("event"), **fields}


def error(
    code: str | None,
    message: str,
    *,
    param: str | None = None,
    client_event_id: str | None = None,
    kind: str = "invalid_request_error",
) -> dict[str, Any]:
    return event(
        "error",
        error={
            "type": kind,
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event_id,
        },
    )


# Fixed, plausible quotas: the point is the event's shape, not real accounting.
REQUESTS_PER_MINUTE = 5000
TOKENS_PER_MINUTE = 400_000


def rate_limits(tokens_used_this_minute: int, responses_this_minute: int) -> dict[str, Any]:
    return event(
        "rate_limits.updated",
        rate_limits=[
            {
                "name": "requests",
                "limit": REQUESTS_PER_MINUTE,
                "remaining": max(0, REQUESTS_PER_MINUTE - responses_this_minute),
                "reset_seconds": 0.012,
            },
            {
                "name": "tokens",
                "limit": TOKENS_PER_MINUTE,
                "remaining": max(0, TOKENS_PER_MINUTE - tokens_used_this_minute),
                "reset_seconds": round(60 * tokens_used_this_minute / TOKENS_PER_MINUTE, 3),
            },
        ],
    )
