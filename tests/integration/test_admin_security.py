"""The admin API is never open: a token always (generated into a 0600 file when none is
set), and requests from web pages (foreign Host: DNS rebinding; foreign Origin: CSRF)
are refused. Real sockets, real bridge, the real CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import logging
import stat
from pathlib import Path

import pytest

from agi_bridge.app import Bridge
from agi_bridge.errors import ConfigError

from .conftest import BridgeFactory, admin_headers
from .helpers import config
from .test_admin import AGENT, run_main


def request(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> int:
    """One raw HTTP request (http.client lets us set Host and Origin freely)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest(method, path, skip_host=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        return conn.getresponse().status
    finally:
        conn.close()


def http_port(bridge: Bridge) -> int:
    assert bridge.monitoring.http is not None
    return bridge.monitoring.http.port


async def test_a_token_is_generated_and_always_required(
    start_bridge: BridgeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    bridge, _ = await start_bridge(config(AGENT))
    path = Path.home() / ".config/agi-bridge/admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert len(token) >= 32
    assert str(path) in caplog.text and token not in caplog.text
    port = http_port(bridge)
    host = {"Host": f"127.0.0.1:{port}"}
    hangup = "/admin/calls/nope/hangup"
    assert await asyncio.to_thread(request, port, "GET", "/admin/calls", host) == 401
    assert await asyncio.to_thread(request, port, "POST", hangup, host, b"{}") == 401
    auth = {**host, "Authorization": f"Bearer {token}"}
    assert await asyncio.to_thread(request, port, "GET", "/admin/calls", auth) == 200
    assert await asyncio.to_thread(request, port, "POST", hangup, auth, b"{}") == 404


async def test_the_token_file_is_reused(start_bridge: BridgeFactory) -> None:
    path = Path.home() / ".config/agi-bridge/admin.token"
    path.parent.mkdir(parents=True)
    path.write_text("my-own-admin-token\n")
    path.chmod(0o600)
    bridge, _ = await start_bridge(config(AGENT))
    assert admin_headers() == {"Authorization": "Bearer my-own-admin-token"}
    port = http_port(bridge)
    auth = {"Host": f"localhost:{port}", "Authorization": "Bearer my-own-admin-token"}
    assert await asyncio.to_thread(request, port, "GET", "/admin/calls", auth) == 200


async def test_requests_from_web_pages_are_refused(start_bridge: BridgeFactory) -> None:
    bridge, _ = await start_bridge(config(AGENT))
    port = http_port(bridge)
    auth = admin_headers()
    hangup = "/admin/calls/nope/hangup"
    own = {"Host": f"127.0.0.1:{port}", **auth}
    cases = {
        # a page on another site posting to the bridge (CSRF)
        "cross-origin": {**own, "Origin": "http://evil.example"},
        "other local port": {**own, "Origin": "http://127.0.0.1:9"},
        "opaque origin": {**own, "Origin": "null"},
        # a rebound DNS name pointing at 127.0.0.1 (DNS rebinding)
        "rebinding": {"Host": f"evil.example:{port}", **auth},
        "no host": {**auth},
    }
    for name, headers in cases.items():
        status = await asyncio.to_thread(request, port, "POST", hangup, headers, b"{}")
        assert status == (400 if name == "no host" else 403), name  # aiohttp: no Host, 400
    # the listener's own origin, and IPv6 / localhost forms, are fine
    same = {**own, "Origin": f"http://127.0.0.1:{port}"}
    assert await asyncio.to_thread(request, port, "POST", hangup, same, b"{}") == 404
    for host in (f"localhost:{port}", f"[::1]:{port}", "127.0.0.1"):
        headers = {"Host": host, **auth}
        assert await asyncio.to_thread(request, port, "GET", "/admin/calls", headers) == 200


async def test_allowed_hosts(start_bridge: BridgeFactory) -> None:
    cfg = config(AGENT)
    cfg = dataclasses.replace(
        cfg, admin=dataclasses.replace(cfg.admin, allowed_hosts=("bridge.internal",))
    )
    bridge, _ = await start_bridge(cfg)
    port = http_port(bridge)
    headers = {"Host": f"bridge.internal:{port}", **admin_headers()}
    assert await asyncio.to_thread(request, port, "GET", "/admin/calls", headers) == 200
    headers["Host"] = f"other.internal:{port}"
    assert await asyncio.to_thread(request, port, "GET", "/admin/calls", headers) == 403


async def test_the_cli_reads_the_token_file_of_the_config(
    start_bridge: BridgeFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "secrets" / "admin.token"
    cfg = config(AGENT)
    cfg = dataclasses.replace(cfg, admin=dataclasses.replace(cfg.admin, token_file=str(token_file)))
    bridge, _ = await start_bridge(cfg)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    port = http_port(bridge)
    conf = tmp_path / "bridge.yaml"
    conf.write_text(
        f'listen: {{http: "127.0.0.1:{port}"}}\nadmin: {{token_file: "{token_file}"}}\n'
    )
    assert await asyncio.to_thread(run_main, ["admin", "-c", str(conf), "calls"]) == 0
    assert capsys.readouterr().out.strip() == "no live calls"
    # without the config it looks in the default file, which has no token: a clear error
    url = f"http://127.0.0.1:{port}"
    assert await asyncio.to_thread(run_main, ["admin", "--url", url, "calls"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "admin.token_file" in err


def test_an_unusable_token_file_is_a_clear_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    cfg = config(AGENT)
    cfg = dataclasses.replace(
        cfg, admin=dataclasses.replace(cfg.admin, token_file=str(blocker / "admin.token"))
    )
    with pytest.raises(ConfigError) as info:
        Bridge(cfg)
    assert info.value.key == "admin.token_file" and "AGI_BRIDGE_ADMIN_TOKEN" in str(info.value)
