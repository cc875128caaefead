"""Call-summary webhook: POST each call's summary as JSON, off the call path.

``submit()`` never blocks and never raises: summaries go into a bounded queue (a full
queue drops the new summary and counts it) and one background worker owned by the
Bridge delivers them in order, each attempt bounded by ``timeout_s``, retrying
``retries`` times with a doubling delay on a network error or a 5xx/429 answer. On
shutdown the worker gets a short grace period to finish the queue, then is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import aiohttp

from agi_bridge.config import Webhook as WebhookConfig

log = logging.getLogger(__name__)

ResultCallback = Callable[[str], None]  # "delivered" | "failed" | "dropped"


class WebhookSender:
    def __init__(self, config: WebhookConfig, *, on_result: ResultCallback | None = None) -> None:
        self.config = config
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max(1, config.queue_size))
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._on_result = on_result
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    def _count(self, result: str) -> None:
        setattr(self, result, getattr(self, result) + 1)
        if self._on_result is not None:
            self._on_result(result)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
            headers={"User-Agent": "agi-bridge"},
        )
        self._task = asyncio.create_task(self._worker(), name="webhook")

    def submit(self, summary: dict[str, Any]) -> None:
        """Queue a summary for delivery (drops it, logged and counted, when the queue is full)."""
        if self._task is None:
            return
        try:
            self._queue.put_nowait(summary)
        except asyncio.QueueFull:
            log.warning(
                "webhook queue full (%d): dropping the summary of call %s",
                self._queue.maxsize,
                summary.get("call_id", "?"),
            )
            self._count("dropped")

    async def close(self, grace: float = 2.0) -> None:
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._queue.join()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _worker(self) -> None:
        while True:
            summary = await self._queue.get()
            try:
                await self._deliver(summary)
            finally:
                self._queue.task_done()

    async def _deliver(self, summary: dict[str, Any]) -> None:
        assert self._session is not None
        cfg = self.config
        call_id = summary.get("call_id", "?")
        extra = {"call_id": call_id}
        body = json.dumps(summary, default=str).encode()
        headers = {"Content-Type": "application/json"}
        token = os.environ.get(cfg.token_env, "") if cfg.token_env else ""
        if token:
            headers["Authorization"] = f"Bearer {token}"
        delay = cfg.retry_delay_s
        for attempt in range(cfg.retries + 1):
            try:
                async with self._session.post(cfg.url, data=body, headers=headers) as response:
                    if response.status < 300:
                        log.info("webhook delivered (HTTP %d)", response.status, extra=extra)
                        self._count("delivered")
                        return
                    why = f"HTTP {response.status}"
                    if response.status < 500 and response.status != 429:
                        log.warning("webhook refused: %s; not retrying", why, extra=extra)
                        self._count("failed")
                        return
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt < cfg.retries:
                log.info(
                    "webhook attempt %d failed (%s); retrying in %.1f s",
                    attempt + 1,
                    why,
                    delay,
                    extra=extra,
                )
                await asyncio.sleep(delay)
                delay *= 2
        log.warning("webhook failed after %d attempts: %s", cfg.retries + 1, why, extra=extra)
        self._count("failed")
