"""Logging of the ``agi-bridge`` commands: one line per record, always with the call id."""

from __future__ import annotations

import json
import logging

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _CallIdFilter(logging.Filter):
    """Every record gets a call_id (``-`` outside a call) so formats can always use it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = "-"
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "call_id": getattr(record, "call_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str, fmt: str, handler: logging.Handler | None = None) -> None:
    """Root logging: every line carries the call id; ``fmt`` is "text" or "json"."""
    handler = handler or logging.StreamHandler()
    handler.addFilter(_CallIdFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s [%(call_id)s] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("websockets").setLevel(logging.WARNING)
