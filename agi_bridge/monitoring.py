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
from typing import TYPE_CHECKING, Any, Protocol, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST

from agi_bridge.asterisk.admission import Throttle
from agi_bridge.config import Config, split_hostport
from agi_bridge.metrics import Metrics
from agi_bridge.realtime_health import RealtimeHealth
from agi_bridge.records import CallRecords
from agi_bridge.webhook import WebhookSender

if TYPE_CHECKING:
    from agi_bridge.call.events import CallView, Observer


class BridgeView(Protocol):
    """What monitoring needs of the bridge (app.Bridge): no import of it, no cycle."""

    @property
    def config(self) -> Config: ...

    @property
    def ami(self) -> Any: ...

    @property
    def active_calls(self) -> int: ...

    def listener_checks(self) -> dict[str, dict[str, Any]]:
        """One health check per listener/transport: {"ok": bool, ...details}."""


log = logging.getLogger(__name__)

RETENTION_INTERVAL_S = 24 * 3600.0


class _OneLineBadRequests(logging.Filter):
    """aiohttp logs a malformed request as an ERROR with a traceback; make it one WARNING
    line, throttled (a scanner must not fill the log). Real handler bugs keep theirs."""

    def __init__(self) -> None:
        super().__init__()
        self._throttle = Throttle(log)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        message = str(getattr(exc, "message", "") or exc).splitlines()[0][:200]
        self._throttle(
            "bad request",
            logging.WARNING,
            "HTTP: malformed request: %s %s (%s)",
            exc.code,
            message,
            record.getMessage(),
        )
        return False


_HTTP_LOG = logging.getLogger("agi_bridge.http")
_HTTP_LOG.addFilter(_OneLineBadRequests())


class _Refuse(asyncio.Protocol):
    """A connection over the limit when no other one can be closed: 503, then close."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # duck-typed: uvloop's TCPTransport does not inherit from asyncio.Transport
        transport = cast(asyncio.Transport, transport)
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        transport.close()


class _LimitedSite(web.TCPSite):
    """A TCPSite that holds at most ``max_connections``: a new connection closes the
    oldest one instead (requests here take milliseconds, so the oldest is idle), so a
    pile of idle sockets can neither exhaust the file descriptors nor lock out /healthz."""

    def __init__(
        self, runner: web.AppRunner, host: str, port: int, *, max_connections: int
    ) -> None:
        super().__init__(runner, host, port, reuse_address=True)
        self.max_connections = max_connections
        self.evicted = 0
        self._throttle = Throttle(log)
        self._handlers: dict[web.RequestHandler, None] = {}  # insertion order: age
        self._evicted: set[web.RequestHandler] = set()

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self._host, self._port, reuse_address=True
        )

    def _protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None
        live = self.open_connections()
        if len(live) >= self.max_connections:
            live[0].force_close()  # the oldest; drops its transport at once
            self._evicted.add(live[0])
            self.evicted += 1
            self._throttle(
                "evict",
                logging.WARNING,
                "HTTP: %d connections open, closed the oldest",
                self.max_connections,
            )
            if len(self.open_connections()) >= self.max_connections:
                return _Refuse()
        handler = server()
        self._handlers[handler] = None
        return handler

    def open_connections(self) -> list[web.RequestHandler]:
        """Connections open or about to open, oldest first.

        asyncio accepts a burst of connections before it runs their connection_made, so
        aiohttp's own list lags behind: count what this factory made. A handler is open
        while it has a transport; one without is either still connecting (aiohttp keeps
        its ``_manager`` until connection_lost) or closed/evicted.
        """
        live = []
        for handler in list(self._handlers):
            connecting = handler.transport is None and handler not in self._evicted
            if handler.transport is not None or (
                connecting and getattr(handler, "_manager", None) is not None
            ):
                live.append(handler)
            else:
                del self._handlers[handler]
                self._evicted.discard(handler)
        return live


class HttpServer:
    """aiohttp on one HOST:PORT (port 0: any free port, see ``port``).

    At most ``max_connections`` open connections (the oldest gives way to a new one); a
    connection that sends no complete request within ``idle_timeout`` seconds is closed;
    header lines and counts are bounded; a malformed request is logged in one line.
    """

    def __init__(
        self,
        listen: str,
        *,
        max_connections: int = 256,
        idle_timeout: float = 10.0,
        unix: str = "",
    ) -> None:
        # unix: a worker of ``serve --workers N`` serves a Unix socket that only the
        # supervisor's front (front.py) talks to; the front holds ``listen`` itself
        self.unix = unix
        self.host, self._port = split_hostport(listen)
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.app = web.Application(client_max_size=1 << 20)
        self._runner: web.AppRunner | None = None
        self._site: _LimitedSite | None = None

    @property
    def port(self) -> int:
        if self.unix:
            return 0  # no TCP port: a Unix socket (self.unix)
        if self._runner is not None and self._runner.addresses:
            return int(self._runner.addresses[0][1])
        return self._port

    @property
    def serving(self) -> bool:
        return self._runner is not None

    @property
    def connections(self) -> int:
        return len(self._site.open_connections()) if self._site is not None else 0

    async def start(self) -> None:
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            shutdown_timeout=2.0,
            handle_signals=False,
            logger=_HTTP_LOG,
            keepalive_timeout=self.idle_timeout,  # aiohttp applies it from the connect on
            max_line_size=8190,
            max_field_size=8190,
            max_headers=64,
        )
        await self._runner.setup()
        site: web.BaseSite
        if self.unix:
            site = web.UnixSite(self._runner, self.unix)
        else:
            site = self._site = _LimitedSite(
                self._runner, self.host, self._port, max_connections=self.max_connections
            )
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        if self.unix:
            log.info("HTTP on %s for the supervisor's front", self.unix)
        else:
            log.info("HTTP listening on %s:%d (/metrics, /healthz)", self.host, self.port)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def log_event(call: CallView, kind: str, data: dict[str, Any]) -> None:
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
    def __init__(self, config: Config, *, http_unix: str = "") -> None:
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
            self.http = HttpServer(
                config.listen.http,
                max_connections=config.limits.max_http_connections,
                idle_timeout=config.limits.http_idle_timeout_s,
                unix=http_unix,
            )
            self.http.app.router.add_get("/metrics", self._metrics)
            self.http.app.router.add_get("/healthz", self._healthz)
        self.realtime = RealtimeHealth(config.limits.unhealthy_after_realtime_failures)
        self.observers: tuple[Observer, ...] = (
            self.records,
            self.metrics,
            log_event,
            self.realtime,
        )
        self._bridge: BridgeView | None = None
        self._retention: asyncio.Task[None] | None = None

    async def start(self, bridge: BridgeView) -> None:
        self._bridge = bridge
        self.metrics.bind(active_calls=lambda: bridge.active_calls, ami=bridge.ami)
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
            checks.update(bridge.listener_checks())
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
            checks["calls"] = {"ok": True, "active": bridge.active_calls}
            checks["realtime"] = self.realtime.check()
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
