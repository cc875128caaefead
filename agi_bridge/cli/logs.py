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
    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "call_id": getattr(record, "call_id", "-"),
            "message": record.getMessage(),
        }
        if self.worker is not None:
            out["worker"] = self.worker
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(
    level: str, fmt: str, handler: logging.Handler | None = None, *, worker: int | None = None
) -> None:
    """Root logging: every line carries the call id; ``fmt`` is "text" or "json".
    ``worker``: a worker of ``serve --workers N`` (its lines share the supervisor's
    stderr, so each says which worker wrote it: ``w1`` in text, ``"worker": 1`` in JSON)."""
    handler = handler or logging.StreamHandler()
    handler.addFilter(_CallIdFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter(worker))
    else:
        tag = "" if worker is None else f"w{worker} "
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s %(levelname)-7s {tag}[%(call_id)s] %(name)s: %(message)s"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("websockets").setLevel(logging.WARNING)
