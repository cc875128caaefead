"""Is Realtime working? Seen from the calls: an observer of call events for /healthz.

Every call that ends with ``realtime_failed`` (key rejected, service down, connection
lost for good) counts a failure; any completed model response counts a success and
resets the count. After ``threshold`` failures in a row, /healthz reports the bridge
unhealthy with the last reason, so an orchestrator or a monitor notices that every call
falls back while the listeners themselves look fine.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

__all__ = ["RealtimeHealth"]

log = logging.getLogger(__name__)

_SECRET_LIKE = re.compile(r"\b(sk-|Bearer\s+)[A-Za-z0-9_*.\-]+")


class RealtimeHealth:
    """Observer ``(call, kind, data)``; ``check()`` gives the /healthz entry."""

    def __init__(self, threshold: int = 3) -> None:
        self.threshold = max(1, threshold)
        self.consecutive_failures = 0
        self.last_failure = ""
        self.last_failure_at: float | None = None  # time.time()
        self.last_success_at: float | None = None

    def __call__(self, call: object, kind: str, data: dict[str, Any]) -> None:
        if kind == "response_done" and data.get("status") != "failed":
            if self.consecutive_failures >= self.threshold:
                log.info("Realtime works again after %d failed calls", self.consecutive_failures)
            self.consecutive_failures = 0
            self.last_success_at = time.time()
        elif kind == "end" and data.get("reason") == "realtime_failed":
            self.consecutive_failures += 1
            detail = str(data.get("detail") or "unknown")
            self.last_failure = _SECRET_LIKE.sub(r"\1***", detail)[:300]
            self.last_failure_at = time.time()
            if self.consecutive_failures == self.threshold:
                log.error(
                    "Realtime failed on %d calls in a row (last: %s): /healthz reports it",
                    self.consecutive_failures,
                    self.last_failure,
                )

    @property
    def ok(self) -> bool:
        return self.consecutive_failures < self.threshold

    def check(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "ok": self.ok,
            "consecutive_failures": self.consecutive_failures,
            "threshold": self.threshold,
        }
        if self.last_failure:
            entry["last_failure"] = self.last_failure
        if not self.ok:
            entry["detail"] = f"the last {self.consecutive_failures} calls failed at Realtime"
        return entry
