"""The endpoint's handshake rules: auth, the retired beta header, injected refusals."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from agi_bridge.simulator import Simulator
from tests.simulator.helpers import AUTH, fast, open_client


async def _refused(url: str, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    with pytest.raises(InvalidStatus) as info:
        await connect(url, additional_headers=headers)
    response = info.value.response
    return response.status_code, json.loads(response.body or b"{}")


async def test_no_key_is_401(sim: Simulator) -> None:
    status, body = await _refused(sim.url, {})
    assert status == 401
    assert body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert sim.sessions == []


async def test_beta_header_is_refused_with_400(sim: Simulator) -> None:
    status, _ = await _refused(sim.url, {**AUTH, "OpenAI-Beta": "realtime=v1"})
    assert status == 400


async def test_session_created_is_ga_shaped(sim: Simulator) -> None:
    client = await open_client(sim.url)
    created = client.seen[-1]
    session = created["session"]
    assert session["type"] == "realtime"
    assert session["model"] == "gpt-realtime"
    assert session["output_modalities"] == ["audio"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert created["event_id"].startswith("event_")
    await client.ws.close()
    await sim.wait_for(lambda: sim.sessions[0].closed)
    assert sim.sessions[0].auth_header == "authorization"


async def test_azure_path_and_api_key_header(sim: Simulator) -> None:
    url = f"ws://127.0.0.1:{sim.port}/openai/v1/realtime?model=my-deployment"
    client = await open_client(url, {"api-key": "azure-key"})
    assert client.seen[-1]["session"]["model"] == "my-deployment"
    assert sim.sessions[0].auth_header == "api-key"
    assert sim.sessions[0].path.startswith("/openai/v1/realtime")
    await client.ws.close()


async def test_expected_key_is_enforced() -> None:
    async with Simulator(fast(api_key="sk-right")) as sim:
        status, body = await _refused(sim.url, {"Authorization": "Bearer sk-wrong-key"})
        assert status == 401
        assert body["error"]["code"] == "invalid_api_key"  # type: ignore[index]
        assert "sk-wrong-key" not in json.dumps(body)  # never echo a key
        client = await open_client(sim.url, {"Authorization": "Bearer sk-right"})
        await client.ws.close()


async def test_refuse_connect_then_accept() -> None:
    async with Simulator(fast(refuse_connect=503, refuse_connect_times=2)) as sim:
        for _ in range(2):
            status, _ = await _refused(sim.url, AUTH)
            assert status == 503
        client = await open_client(sim.url)
        assert sim.handshakes == 3 and sim.refused == 2
        await client.ws.close()


async def test_new_scenario_applies_to_new_sessions(sim: Simulator) -> None:
    sim.scenario = fast(refuse_connect=500)
    status, _ = await _refused(sim.url, AUTH)
    assert status == 500
