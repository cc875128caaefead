"""collect_digits: the caller types a PIN; the digits reach the webhook and nothing else.

Real sockets: the bridge, the simulator, a local HTTP service, and a virtual caller that
sends AudioSocket DTMF frames."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from agi_bridge.simulator import Scenario, Simulator, ToolCall, Turn

from .conftest import BridgeFactory
from .helpers import WebhookServer, config, registered_caller, until

AGENTS = """
tools:
  pin_check:
    description: receives PINs (not offered to the model)
    parameters: {type: object, properties: {}}
    url: {url}/pin
agents:
  default:
    greeting: ""
    turn_detection: {type: server_vad, silence_duration_ms: 400}
    tools: [hangup, collect_digits]
    collect_digits_webhook: pin_check
"""


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookServer]:
    server = WebhookServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def test_collected_digits_go_to_the_webhook_only(
    simulator: Simulator,
    start_bridge: BridgeFactory,
    webhook: WebhookServer,
    utterance: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def pin(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"valid": True, "echo": body["arguments"]["digits"]})

    webhook.routes["pin"] = pin
    simulator.scenario = Scenario(
        greeting="",
        turns=[
            Turn(
                "Please type your PIN, then the pound key.",
                tool_calls=(ToolCall("collect_digits", {"purpose": "PIN", "max_digits": 8}),),
            ),
            Turn("Thank you, I got {output.collected_digits} digits."),
        ],
    )
    cfg = config(AGENTS.replace("{url}", f"http://127.0.0.1:{webhook.port}"))
    bridge, events = await start_bridge(cfg)
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        caller.say(utterance)
        await until(lambda: events.of("tool_call"), what="collect_digits call", timeout=20)
        for digit in "4711#":
            caller.press(digit)
        await until(lambda: len(events.of("agent_transcript")) >= 2, what="answer", timeout=20)
    finally:
        await caller.close()

    [request] = webhook.requests
    assert request["json"]["arguments"] == {"purpose": "PIN", "digits": "4711"}
    session = simulator.sessions[0]
    [output] = [json.loads(f["output"]) for f in session.function_outputs]
    assert output == {"ok": True, "collected_digits": 4}  # not the service's echo
    assert events.of("agent_transcript")[1]["text"] == "Thank you, I got 4 digits."
    # the model never saw a digit, the events (records) and the logs show only the mask
    assert "4711" not in json.dumps(session.received)
    assert "[caller pressed" not in json.dumps(session.received)
    assert [e["digit"] for e in events.of("caller_dtmf")] == ["*"] * 5
    assert "4711" not in caplog.text and "collected 4 digits (terminator)" in caplog.text
    assert "caller pressed *" in caplog.text
    assert not any(f"caller pressed {d}" in caplog.text for d in "147#")
    # the schema the model got
    tools = {t["name"]: t for t in session.session["tools"]}
    assert "pin_check" not in tools
    assert tools["collect_digits"]["parameters"]["required"] == ["purpose", "max_digits"]


async def test_nothing_typed_is_an_error_for_the_model(
    simulator: Simulator, start_bridge: BridgeFactory, webhook: WebhookServer, utterance: bytes
) -> None:
    simulator.scenario = Scenario(
        greeting="",
        turns=[
            Turn(
                "Please type your PIN.",
                tool_calls=(
                    ToolCall("collect_digits", {"purpose": "PIN", "max_digits": 4, "timeout_s": 1}),
                ),
            ),
            Turn("Nothing? {output.error}"),
        ],
    )
    cfg = config(AGENTS.replace("{url}", f"http://127.0.0.1:{webhook.port}"))
    bridge, events = await start_bridge(cfg)
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        caller.say(utterance)
        await until(lambda: len(events.of("agent_transcript")) >= 2, what="answer", timeout=20)
    finally:
        await caller.close()
    assert webhook.requests == []
    [output] = [json.loads(f["output"]) for f in simulator.sessions[0].function_outputs]
    assert output == {"ok": False, "collected_digits": 0, "error": "the caller typed nothing"}
