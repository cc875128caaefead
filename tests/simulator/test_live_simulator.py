"""The GPT-Live simulator speaks the GPT-Live event contract, strictly: the client side of
every test is the bridge's own codec (protocol/gpt_live.py), over a real socket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from agi_bridge.protocol import gpt_live as gl
from agi_bridge.simulator import Scenario, ToolCall, Turn
from agi_bridge.simulator.live import LiveSimulator
from tests.simulator.helpers import fast, silence, ulaw, voiced

AUTH = {"Authorization": "Bearer sk-test"}
CALLER = ulaw(silence(300), voiced(1200), silence(800))


class LiveClient:
    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.seen: list[gl.ServerEvent] = []
        self.raw: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(gl.encode(event))

    async def recv(self, timeout: float = 5.0) -> gl.ServerEvent:
        message = await self.ws.recv()
        self.raw.append(json.loads(message))
        event = gl.parse_server_event(message)
        self.seen.append(event)
        return event

    async def until(self, kind: type[Any], timeout: float = 5.0) -> Any:
        while True:
            event = await self.recv(timeout)
            if isinstance(event, kind):
                return event

    async def error(self) -> gl.ErrorEvent:
        event: gl.ErrorEvent = await self.until(gl.ErrorEvent)
        return event

    async def append(self, ulaw_bytes: bytes, chunk: int = 160) -> None:
        for i in range(0, len(ulaw_bytes), chunk):
            await self.send(gl.input_audio_append(ulaw_bytes[i : i + chunk]))


async def _open(
    sim: LiveSimulator, path: str = "", headers: dict[str, str] | None = None
) -> LiveClient:
    # max_queue=None: a test that stops reading must not stall the close handshake
    ws = await connect(
        sim.url + path, additional_headers=AUTH if headers is None else headers, max_queue=None
    )
    return LiveClient(ws)


@pytest.fixture
async def sim() -> AsyncIterator[LiveSimulator]:
    async with LiveSimulator(fast(turns=[Turn("Sure.", caller_text="hello there")])) as s:
        yield s


async def _started(sim: LiveSimulator, cfg: gl.LiveSessionConfig | None = None) -> LiveClient:
    client = await _open(sim)
    await client.send(gl.session_start(cfg or gl.LiveSessionConfig(instructions="Be brief.")))
    started = await client.until(gl.SessionStarted)
    assert started.session_id == sim.sessions[-1].id
    return client


async def test_handshake_path_query_and_key(sim: LiveSimulator) -> None:
    for path, headers, status in (
        ("?model=gpt-live-1", AUTH, 400),
        ("/extra", AUTH, 404),
        ("", {}, 401),
    ):
        with pytest.raises(InvalidStatus) as info:
            await connect(sim.url + path, additional_headers=headers)
        assert info.value.response.status_code == status
    assert sim.refused == [400, 404, 401]


async def test_commands_before_session_start_are_refused(sim: LiveSimulator) -> None:
    client = await _open(sim)
    await client.send(gl.input_audio_append(b"\xff" * 160))
    assert (await client.error()).code == "session_not_started"
    await client.ws.close()


@pytest.mark.parametrize(
    "event, code, param",
    [
        # Realtime names and shapes are not GPT-Live's
        ({"type": "input_audio_buffer.append", "audio": ""}, "unknown_event_type", "type"),
        ({"type": "response.cancel"}, "unknown_event_type", "type"),
        ({"type": "session.input_audio.append", "data": ""}, "unknown_parameter", "data"),
        ({"type": "session.input_audio.append"}, "missing_required_parameter", "audio"),
        (
            {"type": "session.commentary.append", "content": "x"},
            "missing_required_parameter",
            "delegation_id",
        ),
        (
            {"type": "session.update", "session": {"type": "realtime"}},
            "unknown_parameter",
            "session.type",
        ),
        (
            {"type": "session.update", "session": {"instructions": "new"}},
            "invalid_value",
            "session.instructions",
        ),
    ],
)
async def test_wrong_event_names_and_fields_fail(
    sim: LiveSimulator, event: dict[str, Any], code: str, param: str
) -> None:
    client = await _started(sim)
    await client.send({**event, "event_id": "evt_9"})
    error = await client.error()
    assert (error.code, error.client_event_id) == (code, "evt_9")
    assert sim.sessions[-1].errors_sent[-1]["error"]["param"] == param
    await client.ws.close()


@pytest.mark.parametrize(
    "session, code, param",
    [
        (
            {"model": "gpt-live-1", "output_modalities": ["audio"]},
            "unknown_parameter",
            "session.output_modalities",
        ),
        ({"instructions": "x"}, "missing_required_parameter", "session.model"),
        (
            {"model": "gpt-live-1", "audio": {"input": {"format": {"type": "audio/pcmu"}}}},
            "missing_required_parameter",
            "session.audio.input.format.rate",
        ),
        (
            {
                "model": "gpt-live-1",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 8000}}},
            },
            "invalid_value",
            "session.audio.input.format.rate",
        ),
        ({"model": "gpt-live-1", "voice": "marin"}, "unknown_parameter", "session.voice"),
        (
            {"model": "gpt-live-1", "delegation": {"type": "responses"}},
            "missing_required_parameter",
            "session.delegation.responses",
        ),
    ],
)
async def test_session_start_is_strict(
    sim: LiveSimulator, session: dict[str, Any], code: str, param: str
) -> None:
    client = await _open(sim)
    await client.send({"type": "session.start", "session": session})
    error = await client.error()
    assert error.code == code
    assert sim.sessions[-1].errors_sent[-1]["error"]["param"] == param
    assert sim.sessions[-1].session is None
    await client.ws.close()


async def test_greeting_caller_turn_and_transcripts() -> None:
    scenario = fast(greeting="Hello, how can I help?", turns=[Turn("Sure.", caller_text="hi")])
    async with LiveSimulator(scenario) as sim:
        client = await _started(sim)
        audio, said = b"", ""
        while "help?" not in said:
            event = await client.recv()
            if isinstance(event, gl.OutputAudio):
                audio += event.audio
            elif isinstance(event, gl.OutputTranscript):
                said += event.delta
        # µ-law 8 kHz as asked: ~65 ms per character of the greeting
        assert 1000 < len(audio) / 8 < 3000
        deltas = [r for r in client.raw if r["type"] == "session.output_audio.delta"]
        assert all(set(d) == {"type", "delta"} for d in deltas)  # primary socket: no times
        await client.append(CALLER)
        heard = await client.until(gl.InputTranscript)
        assert heard.delta == "hi" and heard.start_ms < heard.end_ms <= 2300
        await sim.wait_for(lambda: len(sim.sessions[0].spoken) == 2)
        assert sim.sessions[0].spoken[1] == "Sure."
        await client.ws.close()


async def test_caller_speaking_over_the_agent_stops_its_audio() -> None:
    long_reply = "This is a long answer that goes on and on for quite a while. " * 4
    scenario = Scenario(greeting=long_reply, speed=1.0, response_latency_ms=0, burst_chunks=1)
    async with LiveSimulator(scenario) as sim:
        client = await _started(sim)
        await client.until(gl.OutputAudio)
        await client.append(ulaw(voiced(600)))
        session = sim.sessions[0]
        await sim.wait_for(lambda: session.interruptions == 1 and session.spoken)
        assert len(session.spoken[0]) < len(long_reply.strip()) / 2
        await client.ws.close()


async def test_responses_delegation_tool_call_round_trip() -> None:
    tool = ToolCall("send_dtmf", {"digits": "1"}, call_id="call_1")
    scenario = fast(turns=[Turn("One moment.", tool_calls=(tool,)), Turn("Done: {output}.")])
    cfg = gl.LiveSessionConfig(
        delegation="responses",
        backend_model="gpt-5.5",
        tools=({"type": "function", "name": "send_dtmf", "parameters": {"type": "object"}},),
    )
    async with LiveSimulator(scenario) as sim:
        client = await _started(sim, cfg)
        await client.append(CALLER)
        created = await client.until(gl.DelegationCreated)
        assert created.target == "responses"
        call = await client.until(gl.FunctionCall)
        assert call == gl.FunctionCall(
            "call_1", "send_dtmf", '{"digits": "1"}', created.delegation_id
        )
        await client.send(gl.response_create())  # before the output: refused
        assert "No tool output" in (await client.error()).message
        await client.send({**gl.function_call_output("call_9", "x")})
        assert (await client.error()).code == "invalid_value"
        await client.send(gl.function_call_output("call_1", "sent"))
        await client.send(gl.response_create())
        session = sim.sessions[0]
        await sim.wait_for(lambda: "Done: sent." in session.spoken)
        assert session.function_outputs == [
            {"type": "function_call_output", "call_id": "call_1", "output": "sent"}
        ]
        await client.ws.close()


async def test_client_delegation_refuses_responses_commands_and_speaks_commentary() -> None:
    scenario = fast(turns=[Turn("", tool_calls=(ToolCall("lookup"),))])
    async with LiveSimulator(scenario) as sim:
        client = await _started(sim)
        await client.send(gl.function_call_output("call_1", "x"))
        assert (
            await client.error()
        ).message == "response.item.create requires Responses delegation."
        await client.append(CALLER)
        created = await client.until(gl.DelegationCreated)
        assert created.target == "client"
        await client.send(gl.commentary_append("Your order ships today.", created.delegation_id))
        session = sim.sessions[0]
        await sim.wait_for(lambda: "Your order ships today." in session.spoken)
        await client.ws.close()


async def test_usage_is_cumulative_and_close_reports_it(sim: LiveSimulator) -> None:
    client = await _started(sim)
    await client.append(ulaw(silence(10_000)))
    usage = await client.until(gl.UsageUpdated)
    assert usage.seconds == 10.0
    await client.append(ulaw(silence(2_500)))
    await client.send(gl.session_close())
    closed = await client.until(gl.SessionClosed)
    assert closed == gl.SessionClosed("close_requested", 12.5)
    await sim.wait_for(lambda: sim.sessions[0].closed)
