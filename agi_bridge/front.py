"""The supervisor's HTTP front (``serve --workers N``, N > 1): one address per host.

Every worker is a whole Bridge with its own /metrics, /healthz and /admin. Exposed one by
one, N workers would be N scrape targets, N health checks and N admin URLs, and an admin
request would have to guess which worker holds the call. Instead the supervisor serves
``listen.http`` itself and asks the workers over Unix sockets in a private directory
(mode 0700: nothing on the network or under another user reaches them):

    GET /healthz   200 when every worker answers healthy; each worker's own checks
                   under "workers"; 503 naming the failing or silent ones otherwise
    GET /metrics   every worker's families once, each sample labelled worker="i", plus
                   agi_bridge_worker_up{worker} and agi_bridge_worker_restarts_total
    /admin/...     GET /admin/calls merges the workers' lists (each call says its
                   "worker"); a call's own route goes to the worker holding the call
                   (the others answer 404 before they act)

The workers still authenticate admin requests themselves: the front forwards the
Authorization, Host and Origin headers and the body, so one token and one DNS-rebinding
rule apply however many workers there are. The front keeps the listener's hardening
(:class:`~agi_bridge.monitoring.HttpServer`: bounded connections, idle timeout). The
supervisor has no event loop; the front runs its own in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from agi_bridge.monitoring import HttpServer

log = logging.getLogger(__name__)

ASK_TIMEOUT_S = 3.0  # a worker busy with calls still answers /metrics in milliseconds
FORWARDED_HEADERS = ("Authorization", "Host", "Origin", "Content-Type")
ADMIN = "/admin"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]


def labelled(line: str, worker: int) -> str:
    """One exposition-format sample line with ``worker="i"`` as its first label."""
    brace, space = line.find("{"), line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        rest = line[brace + 1 :]
        sep = "" if rest.startswith("}") else ","
        return f'{line[: brace + 1]}worker="{worker}"{sep}{rest}'
    if space == -1:
        return line  # not a sample: left as it is
    return f'{line[:space]}{{worker="{worker}"}}{line[space:]}'


def merge_metrics(texts: dict[int, str]) -> str:
    """The workers' /metrics as one exposition: each family's HELP and TYPE once, then
    the samples of every worker, labelled with its index."""
    headers: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for worker, text in sorted(texts.items()):
        family = ""
        for line in text.splitlines():
            if line.startswith(("# HELP ", "# TYPE ")):
                family = line.split(" ", 3)[2]
                seen = headers.setdefault(family, [])
                samples.setdefault(family, [])
                if line not in seen:
                    seen.append(line)
            elif line and not line.startswith("#"):
                samples.setdefault(family, []).append(labelled(line, worker))
    out: list[str] = []
    for family, lines in samples.items():
        out += headers.get(family, [])
        out += lines
    return "\n".join(out) + "\n"


def front_metrics(up: Sequence[bool], restarts: int) -> str:
    """The supervisor's own families: which workers answered, how many restarts."""
    lines = [
        "# HELP agi_bridge_worker_up 1 when the worker answered this scrape, else 0.",
        "# TYPE agi_bridge_worker_up gauge",
        *(f'agi_bridge_worker_up{{worker="{i}"}} {int(ok)}' for i, ok in enumerate(up)),
        "# HELP agi_bridge_worker_restarts_total Workers the supervisor restarted.",
        "# TYPE agi_bridge_worker_restarts_total counter",
        f"agi_bridge_worker_restarts_total {restarts}",
    ]
    return "\n".join(lines) + "\n"


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def _reply(answer: Answer) -> web.Response:
    response = web.Response(body=answer.body, status=answer.status, headers=answer.headers)
    if answer.content_type:
        response.content_type = answer.content_type
    return response


class Front:
    """``listen.http`` for N workers, each serving HTTP on ``sockets[i]`` (see above)."""

    def __init__(
        self,
        listen: str,
        sockets: Sequence[str],
        *,
        admin: bool,
        restarts: Callable[[], int] = lambda: 0,
        max_connections: int = 256,
        idle_timeout: float = 10.0,
    ) -> None:
        self.sockets = list(sockets)
        self.restarts = restarts
        self.server = HttpServer(listen, max_connections=max_connections, idle_timeout=idle_timeout)
        router = self.server.app.router
        router.add_get("/healthz", self._healthz)
        router.add_get("/metrics", self._metrics)
        if admin:
            router.add_get(f"{ADMIN}/calls", self._list_calls)
            router.add_route("*", f"{ADMIN}/calls/{{call_id}}", self._one_call)
            router.add_route("*", f"{ADMIN}/calls/{{call_id}}/{{action}}", self._one_call)
        self._sessions: list[aiohttp.ClientSession] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self.server.port

    # ------------------------------------------------------------------ the thread

    def start(self) -> None:
        """Bind ``listen.http`` and serve from a thread; raises what binding raised."""
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="http-front", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def stop(self) -> None:
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None:
            with contextlib.suppress(RuntimeError):  # its loop has already ended
                loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._main(ready))
        except BaseException as exc:  # handed to start(), or logged: never lost
            if ready.is_set():
                log.exception("HTTP front stopped: /healthz, /metrics and /admin are down")
            self._error = exc
        finally:
            ready.set()  # start() never waits forever, whatever happened here

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        await self.server.start()  # a bind error reaches start() through _run
        timeout = aiohttp.ClientTimeout(total=ASK_TIMEOUT_S)
        self._sessions = [
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path), timeout=timeout)
            for path in self.sockets
        ]
        log.info(
            "HTTP front on %s:%d for %d workers (/metrics, /healthz, /admin)",
            self.server.host,
            self.port,
            len(self.sockets),
        )
        ready.set()
        try:
            await self._stopped.wait()
        finally:
            for session in self._sessions:
                await session.close()
            await self.server.close()

    # ------------------------------------------------------------------ workers

    async def _ask(
        self, worker: int, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> Answer | None:
        """One worker's answer, or None when it does not answer (starting, restarting)."""
        try:
            async with self._sessions[worker].request(
                method, f"http://worker{path}", headers=headers, data=body or None
            ) as r:
                kept = {}
                if "WWW-Authenticate" in r.headers:
                    kept["WWW-Authenticate"] = r.headers["WWW-Authenticate"]
                return Answer(r.status, await r.read(), r.content_type, kept)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.debug("worker %d: %s %s: %s", worker, method, path, exc)
            return None

    async def _ask_all(
        self, method: str, path: str, headers: dict[str, str]
    ) -> list[Answer | None]:
        return list(
            await asyncio.gather(
                *(self._ask(i, method, path, headers) for i in range(len(self.sockets)))
            )
        )

    @staticmethod
    def _forwarded(request: web.Request) -> dict[str, str]:
        return {k: request.headers[k] for k in FORWARDED_HEADERS if k in request.headers}

    # ------------------------------------------------------------------ routes

    async def _healthz(self, request: web.Request) -> web.Response:
        answers = await self._ask_all("GET", "/healthz", {})
        workers: dict[str, Any] = {}
        failing = []
        for i, answer in enumerate(answers):
            body: Any = None
            if answer is not None:
                with contextlib.suppress(ValueError):
                    body = json.loads(answer.body)
            if not isinstance(body, dict):
                body = {"status": "fail", "detail": "not answering (starting or restarting?)"}
            workers[str(i)] = body
            if answer is None or answer.status != 200 or body.get("status") != "ok":
                failing.append(f"worker {i}")
        healthy = not failing
        out: dict[str, Any] = {
            "status": "ok" if healthy else "fail",
            "checks": {"workers": {"ok": healthy, "count": len(answers)}},
            "workers": workers,
        }
        if failing:
            out["failing"] = failing
        return _json(200 if healthy else 503, out)

    async def _metrics(self, request: web.Request) -> web.Response:
        answers = await self._ask_all("GET", "/metrics", {})
        texts = {
            i: a.body.decode("utf-8", "replace")
            for i, a in enumerate(answers)
            if a is not None and a.status == 200
        }
        up = [i in texts for i in range(len(answers))]
        body = merge_metrics(texts) + front_metrics(up, self.restarts())
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _list_calls(self, request: web.Request) -> web.Response:
        answers = await self._ask_all("GET", request.path_qs, self._forwarded(request))
        calls: list[Any] = []
        silent = [i for i, answer in enumerate(answers) if answer is None]
        for i, answer in enumerate(answers):
            if answer is None:
                continue
            if answer.status != 200:
                return _reply(answer)  # refused (token, Host): the same for every worker
            try:
                listed = json.loads(answer.body).get("calls", [])
            except (ValueError, AttributeError):
                listed = []
            calls += [{**c, "worker": i} for c in listed if isinstance(c, dict)]
        if len(silent) == len(answers):
            return _json(503, {"ok": False, "error": "no worker answers"})
        calls.sort(key=lambda c: -float(c.get("duration_s") or 0))  # oldest first
        body: dict[str, Any] = {"ok": True, "calls": calls}
        if silent:  # a partial list says so: their calls are missing from it
            body["missing_workers"] = silent
        return _json(200, body)

    async def _one_call(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = self._forwarded(request)
        last: Answer | None = None
        silent = []
        for i in range(len(self.sockets)):
            answer = await self._ask(i, request.method, request.path_qs, headers, body)
            if answer is None:
                silent.append(i)
                continue
            if answer.status != 404:
                return _reply(answer)
            last = answer
        if silent:  # the call may be in a worker that did not answer: not "no such call"
            error = f"worker {', '.join(map(str, silent))} did not answer; try again"
            return _json(503, {"ok": False, "error": error, "missing_workers": silent})
        assert last is not None
        return _reply(last)
