"""Operator controls: HTTP JSON under ``/admin`` on the bridge's HTTP listener (``listen.http``).

    GET  /admin/calls                      live calls: id, agent, caller, dnid, state, duration
    GET  /admin/calls/{id}                 one call
    POST /admin/calls/{id}/say             {"text": "...", "role": "user" | "system"}
    POST /admin/calls/{id}/interrupt       stop the agent (cancel + clear + truncate)
    POST /admin/calls/{id}/instructions    {"instructions": "..."} (session.update, live)
    POST /admin/calls/{id}/hangup          {"reason": "..."} (optional)

Answers are JSON: ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}`` with 400 (bad
request), 401 (token), 404 (no such call), 409 (call not in conversation) or 502 (the
Realtime session failed).

With ``serve --workers N`` the supervisor's front (front.py) answers on ``listen.http``:
the list covers every worker (each call says its ``"worker"``; ``"missing_workers"``
names any that did not answer), a call's own route reaches the worker holding it, and
503 with ``"missing_workers"`` replaces 404 while a worker that might hold it is silent.

Authentication, always: ``Authorization: Bearer TOKEN``. TOKEN is the value of the
environment variable named by ``admin.token_env`` (``AGI_BRIDGE_ADMIN_TOKEN``), else the
content of ``admin.token_file``; when neither holds one, the bridge generates a token into
that file (mode 0600) and logs where (never the token). An open admin interface on a
non-loopback address without the variable is still refused at start-up (ConfigError).

Browsers: a request whose ``Host`` is a name other than ``localhost`` or one of
``admin.allowed_hosts`` (DNS rebinding), or whose ``Origin`` is not this very listener
(a cross-site request), gets 403 before the token is even looked at.

``agi-bridge admin`` (``run_cli``) is a thin client of this API.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import logging
import os
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from agi_bridge.call.events import CallNotActive, CallRegistry, LiveCall
from agi_bridge.config import Config, Listen, is_loopback, split_hostport
from agi_bridge.errors import BridgeError, ConfigError

__all__ = [
    "add_admin_routes",
    "admin_token",
    "check_admin_auth",
    "ensure_admin_token",
    "host_allowed",
    "run_cli",
    "token_path",
]

log = logging.getLogger(__name__)

PREFIX = "/admin"
MAX_TEXT_CHARS = 4_000  # an operator message
MAX_INSTRUCTIONS_CHARS = 32_000

Handler = Callable[[web.Request], Awaitable[web.Response]]


def admin_token(config: Config, env: Mapping[str, str] | None = None) -> str:
    """The admin token from the environment ("" when not set)."""
    env = os.environ if env is None else env
    return env.get(config.admin.token_env, "")


def token_path(config: Config) -> Path:
    return Path(config.admin.token_file).expanduser()


def read_token_file(path: Path) -> str:
    """The token in *path*, "" when there is none (missing or empty file)."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""


def ensure_admin_token(config: Config, env: Mapping[str, str] | None = None) -> str:
    """The token the admin API requires: the environment's, the file's, or a new one
    generated into the file (0600). Logs where it comes from, never the token."""
    token = admin_token(config, env)
    if token:
        log.info("admin API: token from %s", config.admin.token_env)
        return token
    path = token_path(config)
    try:
        return _token_from_file(config, path)
    except OSError as exc:
        raise ConfigError(
            f"cannot read or create the admin token file {path}: {exc.strerror}; "
            f"set {config.admin.token_env} or another admin.token_file",
            file=config.source,
            key="admin.token_file",
        ) from exc


def _token_from_file(config: Config, path: Path) -> str:
    token = read_token_file(path)
    if token:
        if path.stat().st_mode & 0o077:
            log.warning("admin API: %s is readable by others; chmod 600 it", path)
        log.info("admin API: token from %s", path)
        return token
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to an existing (empty) file
    log.warning(
        "admin API: no token in %s: generated one into %s (mode 0600); "
        "`agi-bridge admin` reads it from there",
        config.admin.token_env,
        path,
    )
    return token


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """True for an IP literal, localhost, or a name in *allowed* (host without port)."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    if host == "localhost" or host in (h.lower() for h in allowed):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_of(authority: str) -> str:
    """``example.com:8088`` -> ``example.com``; ``[::1]:8088`` -> ``[::1]``."""
    if authority.startswith("["):
        return authority.partition("]")[0] + "]"
    return authority.rpartition(":")[0] if ":" in authority else authority


def foreign_request(request: web.Request, allowed: tuple[str, ...]) -> str:
    """Why a request must be refused as coming from a web page ("" = it is fine)."""
    host_header = request.headers.get("Host", "")
    if not host_header or not host_allowed(_host_of(host_header), allowed):
        return f"Host {host_header!r} is not this bridge (see admin.allowed_hosts)"
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower() != f"http://{host_header}".lower():
        return f"cross-origin request from {origin!r} refused"
    return ""


def check_admin_auth(config: Config, env: Mapping[str, str] | None = None) -> None:
    """Refuse an open admin interface on a non-loopback address (ConfigError)."""
    listen = getattr(config.listen, "http", "")
    if not config.admin.enabled or not listen or admin_token(config, env):
        return
    host, _ = split_hostport(listen)
    if not is_loopback(host):
        raise ConfigError(
            f"the admin interface on {listen} (not a loopback address) needs a token: "
            f"set {config.admin.token_env}, or admin.enabled: false",
            file=config.source,
            key="listen.http",
        )


def _reply(status: int = 200, **body: Any) -> web.Response:
    body = {"ok": 200 <= status < 300, **body}
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def add_admin_routes(app: web.Application, bridge: CallRegistry) -> None:
    """Register the /admin routes on *app* (before it starts); see the module docstring."""
    config = bridge.config
    check_admin_auth(config)
    token = ensure_admin_token(config)
    allowed_hosts = config.admin.allowed_hosts

    def guarded(handler: Handler) -> Handler:
        async def wrapper(request: web.Request) -> web.Response:
            foreign = foreign_request(request, allowed_hosts)
            if foreign:
                return _reply(403, error=foreign)
            given = request.headers.get("Authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                value.strip().encode(), token.encode()
            ):
                response = _reply(401, error="missing or wrong bearer token")
                response.headers["WWW-Authenticate"] = 'Bearer realm="agi-bridge admin"'
                return response
            try:
                return await handler(request)
            except CallNotActive as exc:
                return _reply(409, error=str(exc))
            except BridgeError as exc:
                return _reply(502, error=f"{type(exc).__name__}: {exc}")

        return wrapper

    def find(request: web.Request) -> LiveCall:
        call = bridge.find_call(request.match_info["call_id"])
        if call is None:
            raise web.HTTPNotFound(
                text=json.dumps({"ok": False, "error": "no such call"}),
                content_type="application/json",
            )
        return call

    async def body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            data = await request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(
                text=json.dumps({"ok": False, "error": "the body must be a JSON object"}),
                content_type="application/json",
            )
        return data

    def text_field(data: dict[str, Any], key: str, limit: int) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            error = f"{key!r} must be a non-empty string"
        elif len(value) > limit:
            error = f"{key!r} is longer than {limit} characters"
        else:
            return value.strip()
        raise web.HTTPBadRequest(
            text=json.dumps({"ok": False, "error": error}), content_type="application/json"
        )

    async def list_calls(request: web.Request) -> web.Response:
        calls = sorted(bridge.live_calls(), key=lambda c: c.started_at)
        return _reply(calls=[c.info() for c in calls if c.call_id != "-"])

    async def get_call(request: web.Request) -> web.Response:
        return _reply(call=find(request).info())

    async def say(request: web.Request) -> web.Response:
        call = find(request)
        data = await body(request)
        text = text_field(data, "text", MAX_TEXT_CHARS)
        role = data.get("role", "user")
        if role not in ("user", "system"):
            return _reply(400, error="'role' must be 'user' or 'system'")
        await call.say(text, "system" if role == "system" else "user")
        return _reply(call=call.info())

    async def interrupt(request: web.Request) -> web.Response:
        call = find(request)
        cut = await call.interrupt()
        return _reply(call=call.info(), **cut)

    async def instructions(request: web.Request) -> web.Response:
        call = find(request)
        text = text_field(await body(request), "instructions", MAX_INSTRUCTIONS_CHARS)
        await call.set_instructions(text)
        return _reply(call=call.info())

    async def hangup(request: web.Request) -> web.Response:
        call = find(request)
        data = await body(request)
        reason = data.get("reason") or "operator"
        if not isinstance(reason, str):
            return _reply(400, error="'reason' must be a string")
        call.hangup(reason[:200])
        return _reply(call=call.info())

    router = app.router
    router.add_get(f"{PREFIX}/calls", guarded(list_calls))
    router.add_get(f"{PREFIX}/calls/{{call_id}}", guarded(get_call))
    router.add_post(f"{PREFIX}/calls/{{call_id}}/say", guarded(say))
    router.add_post(f"{PREFIX}/calls/{{call_id}}/interrupt", guarded(interrupt))
    router.add_post(f"{PREFIX}/calls/{{call_id}}/instructions", guarded(instructions))
    router.add_post(f"{PREFIX}/calls/{{call_id}}/hangup", guarded(hangup))


# ----------------------------------------------------------------------------- CLI


def add_cli(sub: Any) -> None:
    """The ``agi-bridge admin`` subcommand (argparse subparsers action)."""
    p = sub.add_parser("admin", help="operator controls of a running bridge (HTTP admin API)")
    p.add_argument("--url", help="the bridge's HTTP listener (default: from -c, or listen.http)")
    p.add_argument("-c", "--config", help="config file: its listen.http and admin.token_env")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("calls", help="list the live calls")
    a = actions.add_parser("say", help="add a message to a call's conversation")
    a.add_argument("call")
    a.add_argument("text")
    a.add_argument("--role", choices=("user", "system"), default="user")
    a = actions.add_parser("interrupt", help="stop the agent talking")
    a.add_argument("call")
    a = actions.add_parser("instructions", help="replace a call's instructions")
    a.add_argument("call")
    a.add_argument("text")
    a = actions.add_parser("hangup", help="end a call")
    a.add_argument("call")
    a.add_argument("--reason", default="operator")


def _base_url(args: argparse.Namespace, config: Config | None) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    listen = getattr(config.listen if config else Listen(), "http", "") or Listen().http
    host, port = split_hostport(listen)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def run_cli(args: argparse.Namespace, config: Config | None) -> int:
    """Run one ``agi-bridge admin`` action; prints the answer, returns the exit code."""
    base = _base_url(args, config)
    cfg = config or Config()
    try:
        token = admin_token(cfg) or read_token_file(token_path(cfg))
    except OSError as exc:
        print(f"error: cannot read the admin token: {exc}", file=sys.stderr)
        return 1
    path, payload = f"{PREFIX}/calls", None
    if args.action != "calls":
        path = f"{PREFIX}/calls/{urllib.parse.quote(args.call, safe='')}/{args.action}"
        payload = {}
        if args.action == "say":
            payload = {"text": args.text, "role": args.role}
        elif args.action == "instructions":
            payload = {"instructions": args.text}
        elif args.action == "hangup":
            payload = {"reason": args.reason}
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(base + path, data=data, method="POST" if data else "GET")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read() or b"{}").get("error") or exc.reason
        except ValueError:
            detail = exc.reason
        print(f"error: HTTP {exc.code}: {detail}", file=sys.stderr)
        if exc.code == 401:
            print(
                f"(the token comes from {cfg.admin.token_env} or {token_path(cfg)}; "
                "give -c CONFIG if the bridge uses another admin.token_file)",
                file=sys.stderr,
            )
        return 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"error: cannot reach {base}: {reason}", file=sys.stderr)
        return 1
    if args.action == "calls":
        calls = answer.get("calls", [])
        if not calls:
            print("no live calls")
        for c in calls:
            print(
                f"{c['id']}  {c['agent']:<12} caller {c['caller'] or '-':<16} "
                f"dnid {c['dnid'] or '-':<10} {c['state']:<10} {c['duration_s']:7.1f} s"
            )
        return 0
    extra = ""
    if args.action == "interrupt":
        heard, dropped = answer.get("audio_end_ms", 0), answer.get("dropped_ms", 0)
        extra = f" (heard {heard} ms, dropped {dropped:.0f} ms)"
    print(f"ok: {args.action} {args.call}{extra}")
    return 0
