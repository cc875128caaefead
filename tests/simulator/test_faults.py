"""Fault injection, and the service's answers to broken client input."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.exceptions import ConnectionClosed

from agi_bridge.simulator import Simulator
from tests.simulator.helpers import fast, open_client


async def test_close_after_ms() -> None:
    async with Simulator(fast(close_after_ms=100, close_code=1011)) as sim:
        client = await open_client(sim.url)
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await client.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1011
        await sim.wait_for(lambda: sim.sessions[0].closed)
        assert sim.sessions[0].close_code == 1011


async def test_error_after_ms_session_expired() -> None:
    async with Simulator(fast(error_after_ms=50, error_code="session_expired")) as sim:
        client = await open_client(sim.url)
        error = (await client.expect("error"))["error"]
        assert error["code"] == "session_expired" and error["type"] == "invalid_request_error"
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001


async def test_server_error_closes_1011() -> None:
    async with Simulator(fast(error_after_ms=50)) as sim:
        client = await open_client(sim.url)
        error = (await client.expect("error"))["error"]
        assert (error["type"], error["code"]) == ("server_error", "server_error")
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1011
        assert sim.sessions[0].errors_sent[0]["error"]["code"] == "server_error"


async def test_max_session_duration() -> None:
    async with Simulator(fast(max_session_ms=150)) as sim:
        client = await open_client(sim.url)
        error = (await client.expect("error"))["error"]
        assert error["code"] == "session_expired"
        assert "maximum duration" in error["message"]
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001


async def test_delay_session_created() -> None:
    async with Simulator(fast(delay_session_created_ms=200)) as sim:
        start = time.monotonic()
        await open_client(sim.url)  # returns at session.created
        assert time.monotonic() - start >= 0.2


async def test_unknown_events_are_sent_when_asked() -> None:
    async with Simulator(fast(send_unknown_events=True, greeting="Hello there, " * 6)) as sim:
        client = await open_client(sim.url)
        assert (await client.recv())["type"] == "session.future_feature"
        await client.send("response.create")
        events = await client.until("response.done")
        unknown = [e for e in events if e["type"] == "response.future_thing"]
        assert len(unknown) >= 2
        assert all(e["event_id"].startswith("event_") for e in unknown)


async def test_malformed_message() -> None:
    async with Simulator(fast(malformed_after_ms=50)) as sim:
        client = await open_client(sim.url)
        message = await asyncio.wait_for(client.ws.recv(), 2)
        with pytest.raises(ValueError):
            json.loads(message)
        # The session goes on.
        await client.send("response.create")
        await client.expect("response.done")


async def test_unknown_client_event_and_invalid_json(sim: Simulator) -> None:
    client = await open_client(sim.url)
    await client.send("foo", event_id="evt_foo")
    error = (await client.expect("error"))["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("Invalid value: 'foo'.")
    assert error["event_id"] == "evt_foo"
    await client.ws.send("{not json")
    assert (await client.expect("error"))["error"]["code"] == "invalid_json"
    await client.ws.send(json.dumps({"event_id": "x"}))
    assert (await client.expect("error"))["error"]["param"] == "type"
    await client.send("input_audio_buffer.append", audio="***")
    assert (await client.expect("error"))["error"]["param"] == "audio"
    assert len(sim.sessions[0].errors_sent) == 4
