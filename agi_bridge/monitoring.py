"""What the Bridge runs beside the calls: records, metrics, health, webhook, HTTP.

    Call ──events──> CallRecords  (events.jsonl, summary.json, call.wav) ──> WebhookSender
               └───> Metrics      (per-Bridge CollectorRegistry)
               └───> log_event    (one log line per meaningful event, with the call id)
    HttpServer (aiohttp, ``listen.http``):  GET /metrics   GET /healthz

The Bridge creates one :class:`Monitoring`, passes its ``observers`` to every Call,
starts it after its listeners and closes it on shutdown. ``http.app`` is an ordinary
``aiohttp.web.Application``: more routes (the admin API) can be added to it before
``start()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from agi_bridge.config import Config, split_hostport
from agi_bridge.metrics import Metrics
from agi_bridge.records import CallRecords
from agi_bridge.webhook import WebhookSender

if TYPE_CHECKING:
    from agi_bridge.app import Bridge
    from agi_bridge.call import Call, Observer

log = logging.getLogger(__name__)

RETENTION_INTERVAL_S = 24 * 3600.0


class HttpServer:
    """aiohttp on one HOST:PORT (port 0: any free port, see ``port``)."""

    def __init__(self, listen: str) -> None:
        self.host, self._port = split_hostport(listen)
        self.app = web.Application()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def port(self) -> int:
        if self._runner is not None and self._runner.addresses:
            return int(self._runner.addresses[0][1])
        return self._port

    @property
    def serving(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self._port, reuse_address=True)
        try:
            await self._site.start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        log.info("HTTP listening on %s:%d (/metrics, /healthz)", self.host, self.port)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def log_event(call: Call, kind: str, data: dict[str, Any]) -> None:
    """Log the events the Call does not log itself, one line each, with the call id."""
    logger = logging.LoggerAdapter(log, {"call_id": call.call_id})
    if kind == "start":
        logger.info(
            "call from %s to %s: agent %s, channel %s",
            data.get("caller") or "-",
            data.get("dnid") or "-",
            data.get("agent") or "-",
            data.get("channel") or "-",
        )
    elif kind == "turn_latency":
        logger.info("turn latency %.0f ms", data.get("ms", 0.0))
    elif kind == "caller_dtmf":
        logger.info("caller pressed %s", data.get("digit"))
    elif kind == "dtmf_sent":
        logger.info("agent pressed %s", data.get("digit"))
    elif kind in ("speech_started", "speech_stopped"):
        logger.debug("caller %s speaking", "started" if kind == "speech_started" else "stopped")
    elif kind == "response_done":
        usage = data.get("usage") or {}
        logger.debug(
            "response %s: %s tokens in, %s out",
            data.get("status"),
            usage.get("input_tokens", "?"),
            usage.get("output_tokens", "?"),
        )


class Monitoring:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics(config)
        self.webhook: WebhookSender | None = None
        if config.webhook.url:
            counter = self.metrics.webhook
            self.webhook = WebhookSender(
                config.webhook, on_result=lambda result: counter.labels(result=result).inc()
            )
        self.records = CallRecords(
            config, on_summary=(self.webhook.submit,) if self.webhook is not None else ()
        )
        self.http: HttpServer | None = None
        if config.listen.http:
            self.http = HttpServer(config.listen.http)
            self.http.app.router.add_get("/metrics", self._metrics)
            self.http.app.router.add_get("/healthz", self._healthz)
        self.observers: tuple[Observer, ...] = (self.records, self.metrics, log_event)
        self._bridge: Bridge | None = None
        self._retention: asyncio.Task[None] | None = None

    async def start(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self.metrics.bind(active_calls=lambda: len(bridge.calls), ami=bridge.ami)
        if self.records.root is not None and self.config.records.retention_days > 0:
            await asyncio.to_thread(self.records.purge)
            self._retention = asyncio.create_task(self._purge_daily(), name="records-retention")
        if self.webhook is not None:
            await self.webhook.start()
        if self.http is not None:
            await self.http.start()

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        task, self._retention = self._retention, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.webhook is not None:
            await self.webhook.close()

    async def _purge_daily(self) -> None:
        while True:
            await asyncio.sleep(RETENTION_INTERVAL_S)
            try:
                await asyncio.to_thread(self.records.purge)
            except Exception:
                log.exception("records retention failed")

    # -------------------------------------------------------------------- health

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, checks): process up, listeners bound, AMI connected when used."""
        checks: dict[str, dict[str, Any]] = {"process": {"ok": True}}
        bridge = self._bridge
        if bridge is not None:
            cfg = bridge.config
            checks["audiosocket"] = {
                "ok": bridge.audiosocket.serving,
                "listen": cfg.listen.audiosocket,
            }
            checks["fastagi"] = {"ok": bridge.fastagi.serving, "listen": cfg.listen.fastagi}
            if bridge.ami is not None:
                checks["ami"] = {
                    "ok": bool(bridge.ami.connected),
                    "server": f"{cfg.ami.host}:{cfg.ami.port}",
                }
                if not bridge.ami.connected:  # say why, and what to do (`make run` alone)
                    why = getattr(bridge.ami, "last_error", "") or "not logged in yet"
                    checks["ami"]["detail"] = (
                        f"{why}; is Asterisk running with manager.conf's [{cfg.ami.username}]"
                        " user? Without Asterisk, set ami.enabled: false"
                    )
            checks["calls"] = {"ok": True, "active": len(bridge.calls)}
        else:
            checks["process"] = {"ok": False, "detail": "bridge not started"}
        healthy = all(c["ok"] for c in checks.values())
        return healthy, checks

    async def _healthz(self, request: web.Request) -> web.Response:
        healthy, checks = self.health()
        body: dict[str, Any] = {"status": "ok" if healthy else "fail", "checks": checks}
        if not healthy:
            body["failing"] = [name for name, c in checks.items() if not c["ok"]]
        return web.Response(
            text=json.dumps(body), status=200 if healthy else 503, content_type="application/json"
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
