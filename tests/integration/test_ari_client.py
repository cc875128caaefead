"""The ARI client over real sockets against a small aiohttp server shaped like Asterisk's
ARI: basic auth, JSON errors, the events websocket of one application, dropped
connections and reconnects."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from agi_bridge.asterisk.ari import AriClient
from agi_bridge.errors import AriError
from agi_bridge.protocol.ari import AriEvent, StasisStart

PASSWORD = "s3cret-ari-pw"
AUTH = "Basic " + base64.b64encode(f"agi_bridge:{PASSWORD}".encode()).decode()


class FakeAri:
    def __init__(self) -> None:
        self.event_queries: list[dict[str, str]] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ari/events", self.events)
        app.router.add_get("/ari/asterisk/info", self.info)
        app.router.add_post("/ari/channels/{id}/answer", self.answer)
        app.router.add_post("/ari/channels/{id}/dtmf", self.slow)
        return app

    def authorised(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != AUTH:
            raise web.HTTPUnauthorized(text='{"message": "Authentication required"}')

    async def events(self, request: web.Request) -> web.WebSocketResponse:
        self.authorised(request)
        self.event_queries.append(dict(request.query))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        async for _ in ws:
            pass
        return ws

    async def info(self, request: web.Request) -> web.Response:
        self.authorised(request)
        return web.json_response({"system": {"version": "22.10.1"}})

    async def answer(self, request: web.Request) -> web.Response:
        self.authorised(request)
        self.requests.append(("POST", request.path, dict(request.query)))
        if request.match_info["id"] == "gone":
            return web.json_response({"message": "Channel not found"}, status=404)
        return web.Response(status=204)

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(status=204)


@pytest.fixture
async def fake_ari() -> AsyncIterator[tuple[FakeAri, str]]:
    fake = FakeAri()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield fake, f"http://127.0.0.1:{runner.addresses[0][1]}"
    for ws in fake.sockets:
        await ws.close()
    await runner.cleanup()


def make_client(
    url: str, password: str = PASSWORD, **kwargs: object
) -> tuple[AriClient, list[AriEvent], list[int]]:
    events: list[AriEvent] = []
    resyncs: list[int] = []

    async def resync() -> None:
        resyncs.append(1)

    client = AriClient(
        url,
        "agi-bridge",
        "agi_bridge",
        password,
        on_event=events.append,
        on_reconnect=resync,
        request_timeout_s=0.5,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        **kwargs,  # type: ignore[arg-type]
    )
    return client, events, resyncs


async def test_subscribes_to_its_own_app_and_delivers_events(fake_ari: tuple[FakeAri, str]) -> None:
    fake, url = fake_ari
    client, events, _ = make_client(url)
    await client.start()
    try:
        await client.wait_connected(2)
        assert fake.event_queries == [{"app": "agi-bridge", "subscribeAll": "false"}]
        await fake.sockets[0].send_str(
            '{"type":"StasisStart","args":["sales"],"channel":{"id":"c1","name":"PJSIP/1"}}'
        )
        await fake.sockets[0].send_str("not json")  # logged and skipped
        await fake.sockets[0].send_str('{"type":"ChannelVarset"}')
        async with asyncio.timeout(2):
            while len(events) < 2:  # noqa: ASYNC110 - filled by the client's reader
                await asyncio.sleep(0.01)
        assert isinstance(events[0], StasisStart) and events[0].args == ("sales",)
        assert (await client.asterisk_info())["system"]["version"] == "22.10.1"
    finally:
        await client.close()


async def test_reconnects_after_a_drop_and_resyncs(fake_ari: tuple[FakeAri, str]) -> None:
    fake, url = fake_ari
    client, _, resyncs = make_client(url)
    await client.start()
    try:
        await client.wait_connected(2)
        await fake.sockets[0].close()  # Asterisk restarted / connection lost
        async with asyncio.timeout(3):
            while client.connections < 2 or not resyncs:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert len(fake.event_queries) == 2
        await client.drop_events_connection()  # the operator's way to force it
        async with asyncio.timeout(3):
            while client.connections < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert len(resyncs) == 2
    finally:
        await client.close()


async def test_application_replaced_stops_the_client_without_reconnecting(
    fake_ari: tuple[FakeAri, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = fake_ari
    client, events, resyncs = make_client(url)
    await client.start()
    try:
        await client.wait_connected(2)
        await fake.sockets[0].send_str('{"type":"ApplicationReplaced","application":"agi-bridge"}')
        async with asyncio.timeout(2):
            while not client.replaced or client.connected.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # a few backoffs (0.05 .. 0.2 s): no new connection
        assert client.connections == 1 and len(fake.event_queries) == 1
        assert events == [] and resyncs == []
        assert "taken over by another websocket" in caplog.text
    finally:
        await client.close()


async def test_errors_name_method_path_status_and_never_the_password(
    fake_ari: tuple[FakeAri, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, url = fake_ari
    client, _, _ = make_client(url)
    await client.start()
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(AriError) as info:
            await client.answer("gone")
        assert str(info.value) == "ARI POST /channels/gone/answer: 404 Not Found: Channel not found"
        with pytest.raises(AriError, match=r"ARI POST /channels/c1/dtmf: timed out"):
            await client.send_dtmf("c1", "1", 100)
        await client.answer("c1")
    finally:
        await client.close()
    wrong, _, _ = make_client(url, password="wrong")
    await wrong.start()
    try:
        with pytest.raises(AriError, match="ARI GET /asterisk/info: 401 Unauthorized"):
            await wrong.asterisk_info()
    finally:
        await wrong.close()
    assert PASSWORD not in caplog.text
    assert base64.b64encode(f"agi_bridge:{PASSWORD}".encode()).decode() not in caplog.text


async def test_unreachable_asterisk_is_retried_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _, _ = make_client("http://127.0.0.1:9")  # discard port: nothing listens
    await client.start()
    try:
        with pytest.raises(AriError, match="not connected"):
            await client.wait_connected(0.5)
        with pytest.raises(AriError, match="ARI GET /asterisk/info: ClientConnectorError"):
            await client.asterisk_info()
    finally:
        await client.close()
    assert caplog.text.count("ARI events websocket") >= 2  # it kept trying
