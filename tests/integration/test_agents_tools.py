"""Routing, transfer, switch_agent and webhook tools on real sockets against the simulator."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import statistics
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from agi_bridge.simulator import Scenario, Simulator, ToolCall, Turn
from agi_bridge.virtual_caller import VirtualCaller

from .conftest import BridgeFactory
from .helpers import (
    FakeCallAmi,
    WebhookServer,
    agi_request,
    close_like_asterisk,
    config,
    registered_caller,
    until,
)
from .test_call_flow import voiced_frames

AGENTS = """
agents:
  default:
    instructions: You are the reception desk.
    greeting: ""
    turn_detection: {type: server_vad, silence_duration_ms: 400}
    transfer_targets:
      sales: {context: from-agents, exten: "200", description: The sales team}
      echo: {context: test-echo, exten: "600", priority: 2, description: An echo test}
    handoff_agents: [billing]
  sales:
    instructions: You are the sales agent.
    greeting: ""
  billing:
    description: Answers questions about invoices
    instructions: You are the billing agent.
    greeting: ""
    voice: cedar
    tools: [hangup]
routes:
  - {dnid: "5551000", agent: sales}
  - {caller_id: "re:\\\\+4420.*", agent: billing}
"""


def outputs(sim: Simulator) -> list[dict[str, Any]]:
    return [json.loads(o["output"]) for o in sim.sessions[0].function_outputs]


# ----------------------------------------------------------------------------- routing


async def test_fastagi_routes_by_dialed_number_and_caller_id(
    simulator: Simulator, start_bridge: BridgeFactory
) -> None:
    bridge, events = await start_bridge(config(AGENTS))
    port = bridge.fastagi.port
    assert (await agi_request(port, dnid="5551000"))["AGI_BRIDGE_AGENT"] == "sales"
    assert (await agi_request(port, callerid="+442071234567"))["AGI_BRIDGE_AGENT"] == "billing"
    # no route: the AGI argument names an agent, else default_agent
    assert (await agi_request(port, args=("billing",)))["AGI_BRIDGE_AGENT"] == "billing"
    assert (await agi_request(port, args=("nobody",)))["AGI_BRIDGE_AGENT"] == "default"
    # a route wins over the AGI argument
    variables = await agi_request(port, dnid="5551000", args=("billing",))
    assert variables["AGI_BRIDGE_AGENT"] == "sales"

    # the call that follows runs the routed agent's session
    caller = await registered_caller(port, bridge.audiosocket.port, dnid="5551000")
    try:
        await until(lambda: simulator.sessions and simulator.sessions[-1].received, what="session")
        await until(lambda: events.of("start"), what="start")
    finally:
        await caller.close()
    assert events.of("start")[0]["agent"] == "sales"
    assert events.of("start")[0]["dnid"] == "5551000"
    update = simulator.sessions[-1].received[0]
    assert update["type"] == "session.update"
    assert "You are the sales agent." in update["session"]["instructions"]


# ---------------------------------------------------------------------------- transfer


async def test_transfer_plays_sentence_redirects_and_ends_without_hangup_frame(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    sentence = "Certainly, I am putting you through to our sales team now."
    simulator.scenario = Scenario(
        greeting="",
        turns=[
            Turn(
                sentence,
                tool_calls=(
                    ToolCall("transfer", {"destination": "sales", "summary": "wants a quote"}),
                ),
            )
        ],
    )
    ami = FakeCallAmi()
    bridge, events = await start_bridge(config(AGENTS), ami=ami)
    caller = await registered_caller(
        bridge.fastagi.port, bridge.audiosocket.port, channel="PJSIP/bob-00000007"
    )
    # Asterisk: after the Redirect it takes the channel out of AudioSocket() and closes
    ami.on_redirect = lambda: asyncio.get_running_loop().call_later(
        0.2, close_like_asterisk, caller
    )
    try:
        caller.say(utterance)
        await asyncio.wait_for(caller.closed.wait(), 20)
    finally:
        await caller.close()
    await until(lambda: events.of("end"), what="call end")
    assert ami.actions == [("Redirect", ("PJSIP/bob-00000007", "from-agents", "200", 1))]
    end = events.of("end")[0]
    assert (end["reason"], end["detail"]) == ("transferred", "to sales")
    assert caller.heard.hangup_at is None, "no AudioSocket hangup frame after a transfer"
    assert "Setvar" not in ami.names(), "no AGI_BRIDGE_STATUS=completed after a transfer"
    [transfer] = events.of("transfer")
    assert transfer["destination"] == "sales"
    assert transfer["summary"] == "wants a quote"
    assert (transfer["context"], transfer["exten"], transfer["priority"]) == (
        "from-agents",
        "200",
        1,
    )
    # the whole sentence was heard before the Redirect
    produced_ms = simulator.sessions[0].responses[-1].audio_ms
    voiced = voiced_frames(caller.heard.pcm)
    assert (voiced[-1] - voiced[0] + 1) * 20 >= produced_ms - 60
    assert ami.redirected_at is not None
    last_voiced_at = caller.heard.times[voiced[-1]]
    assert last_voiced_at <= ami.redirected_at
    # the model saw the destinations in the tool schema
    tools = {t["name"]: t for t in simulator.sessions[0].session["tools"]}
    destination = tools["transfer"]["parameters"]["properties"]["destination"]
    assert destination["enum"] == ["sales", "echo"]
    assert "The sales team" in tools["transfer"]["description"]


async def test_transfer_to_configured_echo_target_uses_its_priority(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    simulator.scenario = Scenario(
        greeting="",
        turns=[Turn("One moment.", tool_calls=(ToolCall("transfer", {"destination": "echo"}),))],
    )
    ami = FakeCallAmi()
    bridge, events = await start_bridge(config(AGENTS), ami=ami)
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    ami.on_redirect = lambda: close_like_asterisk(caller)
    try:
        caller.say(utterance)
        await asyncio.wait_for(caller.closed.wait(), 20)
    finally:
        await caller.close()
    assert ami.actions == [("Redirect", ("PJSIP/alice-00000001", "test-echo", "600", 2))]
    await until(lambda: events.of("end"), what="call end")
    assert events.of("end")[0]["reason"] == "transferred"
    assert events.of("transfer")[0]["summary"] == ""


async def test_transfer_ends_the_call_when_asterisk_never_closes(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    simulator.scenario = Scenario(
        greeting="",
        turns=[Turn("Bye.", tool_calls=(ToolCall("transfer", {"destination": "sales"}),))],
    )
    ami = FakeCallAmi()
    cfg = config(AGENTS)
    cfg = dataclasses.replace(
        cfg, limits=dataclasses.replace(cfg.limits, transfer_close_timeout_s=0.5)
    )
    bridge, events = await start_bridge(cfg, ami=ami)
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        caller.say(utterance)
        await asyncio.wait_for(caller.closed.wait(), 20)  # the bridge closes it
    finally:
        await caller.close()
    await until(lambda: events.of("end"), what="call end")
    end = events.of("end")[0]
    assert end["reason"] == "transferred"
    assert "not closed by Asterisk" in end["detail"]
    assert caller.heard.hangup_at is None
    assert ami.names() == ["Redirect"]


async def test_transfer_to_unknown_destination_is_an_error_for_the_model(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    simulator.scenario = Scenario(
        greeting="",
        turns=[
            Turn("Let me see.", tool_calls=(ToolCall("transfer", {"destination": "mars"}),)),
            Turn("Sorry, I cannot transfer you there."),
        ],
    )
    ami = FakeCallAmi()
    bridge, events = await start_bridge(config(AGENTS), ami=ami)
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        caller.say(utterance)
        await until(lambda: len(events.of("agent_transcript")) >= 2, what="answer", timeout=15)
    finally:
        await caller.close()
    [output] = outputs(simulator)
    assert output["ok"] is False
    assert "unknown destination 'mars'" in output["error"]
    assert "sales, echo" in output["error"]
    assert ami.actions == []
    assert events.of("agent_transcript")[1]["text"] == "Sorry, I cannot transfer you there."


async def test_failed_redirect_keeps_the_call_going(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    simulator.scenario = Scenario(
        greeting="",
        turns=[
            Turn("Transferring.", tool_calls=(ToolCall("transfer", {"destination": "sales"}),)),
            Turn("The transfer failed: {output.error}"),
        ],
    )
    ami = FakeCallAmi()
    ami.fail_redirect = "Channel does not exist"
    bridge, events = await start_bridge(config(AGENTS), ami=ami)
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        caller.say(utterance)
        await until(lambda: len(events.of("agent_transcript")) >= 2, what="answer", timeout=15)
        assert not events.of("end")
    finally:
        await caller.close()
    [output] = outputs(simulator)
    assert output == {
        "ok": False,
        "error": "transfer failed: AMI Redirect failed: Channel does not exist",
        "destination": "sales",
    }
    assert "Channel does not exist" in events.of("agent_transcript")[1]["text"]
    await until(lambda: events.of("end"), what="call end")
    assert events.of("end")[0]["reason"] == "caller_hangup"
    assert not events.of("transfer")


# ------------------------------------------------------------------------ switch_agent


async def test_switch_agent_updates_session_and_the_new_agent_continues(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    simulator.scenario = Scenario(
        greeting="Hello, reception.",
        turns=[
            Turn(
                "Let me get billing for you.",
                tool_calls=(ToolCall("switch_agent", {"name": "billing"}),),
            ),
            Turn("Billing here, how can I help with your invoice?"),
        ],
    )
    cfg = config(
        AGENTS.replace(
            'instructions: You are the reception desk.\n    greeting: ""',
            "instructions: You are the reception desk.\n    greeting: Hi",
            1,
        )
    )
    bridge, events = await start_bridge(cfg)
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        await until(lambda: events.of("agent_transcript"), what="greeting")
        caller.say(utterance)
        await until(lambda: len(events.of("agent_transcript")) >= 3, what="billing", timeout=20)
    finally:
        await caller.close()
    session = simulator.sessions[0]
    assert session.errors_sent == []
    updates = [e for e in session.received if e["type"] == "session.update"]
    assert len(updates) == 2
    new = updates[1]["session"]
    assert "You are the billing agent." in new["instructions"]
    assert "reception" not in new["instructions"]
    assert [t["name"] for t in new["tools"]] == ["hangup"]  # billing's tools
    # audio was produced before the switch: the voice the caller heard stays
    assert new["audio"]["output"]["voice"] == "marin"
    assert session.session["instructions"] == new["instructions"]
    [switch] = events.of("agent_switch")
    assert switch == {"agent": "billing", "previous": "default"}
    [output] = outputs(simulator)
    assert output["ok"] is True and output["agent"] == "billing"
    # the function output, then response.create: the new agent speaks
    kinds = [e["type"] for e in session.received if e["type"] != "input_audio_buffer.append"]
    i = kinds.index("conversation.item.create")
    assert kinds[i - 1] == "session.update"
    assert "response.create" in kinds[i + 1 :]
    assert events.of("agent_transcript")[2]["text"].startswith("Billing here")
    # the switch_agent schema lists the allowed agents with their descriptions
    first_tools = {t["name"]: t for t in updates[0]["session"]["tools"]}
    assert first_tools["switch_agent"]["parameters"]["properties"]["name"]["enum"] == ["billing"]
    assert "Answers questions about invoices" in first_tools["switch_agent"]["description"]


async def test_switch_agent_before_any_audio_changes_the_voice(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    simulator.scenario = Scenario(
        greeting="",
        turns=[
            Turn("", tool_calls=(ToolCall("switch_agent", {"name": "billing"}),)),
            Turn("Billing here."),
        ],
    )
    bridge, events = await start_bridge(config(AGENTS))
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        caller.say(utterance)
        await until(lambda: events.of("agent_transcript"), what="billing", timeout=15)
    finally:
        await caller.close()
    session = simulator.sessions[0]
    assert session.errors_sent == []
    updates = [e for e in session.received if e["type"] == "session.update"]
    assert updates[1]["session"]["audio"]["output"]["voice"] == "cedar"
    assert session.responses[-1].text == "Billing here."


async def test_switch_agent_not_offered_without_handoff_agents(
    simulator: Simulator, start_bridge: BridgeFactory
) -> None:
    bridge, _ = await start_bridge(config(AGENTS))
    caller = await registered_caller(
        bridge.fastagi.port, bridge.audiosocket.port, dnid="5551000"
    )  # -> sales: no handoff_agents, no transfer_targets
    try:
        await until(lambda: simulator.sessions and simulator.sessions[-1].received)
    finally:
        await caller.close()
    update = simulator.sessions[-1].received[0]
    assert [t["name"] for t in update["session"]["tools"]] == ["send_dtmf", "hangup"]


# ---------------------------------------------------------------------------- webhooks

WEBHOOK_AGENTS = """
tools:
  lookup_order:
    description: Look up an order by its number
    parameters:
      type: object
      properties:
        order: {type: string, description: The order number}
      required: [order]
    url: {url}/order
    headers_env: {X-Api-Key: TEST_WEBHOOK_KEY}
    timeout_s: 1.5
  stock:
    description: Stock level of a product
    method: GET
    parameters: {type: object, properties: {sku: {type: string}, qty: {type: integer}}}
    url: {url}/stock?source=bridge
    timeout_s: 1.5
  slow_lookup:
    description: A slow back end
    parameters: {type: object, properties: {}}
    url: {url}/slow
    timeout_s: 5
agents:
  default:
    greeting: ""
    turn_detection: {type: server_vad, silence_duration_ms: 400}
    tools: [hangup, lookup_order, stock, slow_lookup]
"""


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookServer]:
    server = WebhookServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def webhook_config(server: WebhookServer) -> Any:
    return config(WEBHOOK_AGENTS.replace("{url}", f"http://127.0.0.1:{server.port}"))


async def run_tool_call(
    simulator: Simulator,
    start_bridge: BridgeFactory,
    server: WebhookServer,
    utterance: bytes,
    call: ToolCall,
    after: str = "Result: {output}",
) -> tuple[dict[str, Any], Any]:
    simulator.scenario = Scenario(
        greeting="", turns=[Turn("Let me check.", tool_calls=(call,)), Turn(after)]
    )
    bridge, events = await start_bridge(webhook_config(server))
    caller = await registered_caller(
        bridge.fastagi.port, bridge.audiosocket.port, dnid="5550100", callerid="5557777"
    )
    try:
        caller.say(utterance)
        await until(lambda: len(events.of("agent_transcript")) >= 2, what="answer", timeout=20)
    finally:
        await caller.close()
    [output] = outputs(simulator)
    return output, events


async def test_webhook_success_sends_arguments_and_call_and_returns_json(
    simulator: Simulator,
    start_bridge: BridgeFactory,
    webhook: WebhookServer,
    utterance: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_KEY", "k-123-secret")

    async def order(request: web.Request) -> web.Response:
        return web.json_response({"order": "A17", "status": "shipped"})

    webhook.routes["order"] = order
    output, events = await run_tool_call(
        simulator,
        start_bridge,
        webhook,
        utterance,
        ToolCall("lookup_order", {"order": "A17"}),
        "Your order is {output.status}.",
    )
    assert output == {"ok": True, "status": 200, "body": {"order": "A17", "status": "shipped"}}
    [request] = webhook.requests
    assert request["method"] == "POST"
    assert request["headers"]["X-Api-Key"] == "k-123-secret"
    sent = request["json"]
    assert sent["arguments"] == {"order": "A17"}
    call = sent["call"]
    assert call["caller_id"] == "5557777" and call["dnid"] == "5550100"
    assert call["channel"] == "PJSIP/alice-00000001" and call["agent"] == "default"
    assert call["call_id"] == events.items[0][0]  # the AudioSocket UUID
    # the schema from the YAML reached the model as written
    tools = {t["name"]: t for t in simulator.sessions[0].session["tools"]}
    assert tools["lookup_order"]["parameters"]["required"] == ["order"]
    assert tools["lookup_order"]["description"] == "Look up an order by its number"


async def test_webhook_get_sends_query_and_returns_text(
    simulator: Simulator, start_bridge: BridgeFactory, webhook: WebhookServer, utterance: bytes
) -> None:
    async def stock(request: web.Request) -> web.Response:
        return web.Response(text="x" * 5000)  # not JSON, longer than max_response_chars

    webhook.routes["stock"] = stock
    output, _ = await run_tool_call(
        simulator,
        start_bridge,
        webhook,
        utterance,
        ToolCall("stock", {"sku": "B-2", "qty": 3}),
        "In stock.",
    )
    assert output["ok"] is True
    assert output["body"] == "x" * 4000
    assert output["truncated"] is True
    [request] = webhook.requests
    assert request["method"] == "GET"
    assert request["query"] == {"source": "bridge", "sku": "B-2", "qty": "3"}
    assert request["headers"]["X-AGI-Bridge-Caller-Id"] == "5557777"


async def test_webhook_http_500_is_an_error_result_and_the_call_continues(
    simulator: Simulator,
    start_bridge: BridgeFactory,
    webhook: WebhookServer,
    utterance: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_KEY", "k")

    async def order(request: web.Request) -> web.Response:
        return web.json_response({"detail": "database down"}, status=500)

    webhook.routes["order"] = order
    output, events = await run_tool_call(
        simulator,
        start_bridge,
        webhook,
        utterance,
        ToolCall("lookup_order", {"order": "A17"}),
        "Sorry, {output.error}.",
    )
    assert output == {
        "ok": False,
        "error": "HTTP 500 Internal Server Error",
        "body": {"detail": "database down"},
    }
    assert events.of("agent_transcript")[1]["text"] == "Sorry, HTTP 500 Internal Server Error."
    await until(lambda: events.of("end"), what="call end")
    assert events.of("end")[0]["reason"] == "caller_hangup"  # not ended by the failed tool


async def test_webhook_timeout_is_an_error_result(
    simulator: Simulator,
    start_bridge: BridgeFactory,
    webhook: WebhookServer,
    utterance: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_KEY", "k")

    async def order(request: web.Request) -> web.Response:
        await asyncio.sleep(4)
        return web.json_response({})

    webhook.routes["order"] = order
    output, _ = await run_tool_call(
        simulator, start_bridge, webhook, utterance, ToolCall("lookup_order", {"order": "1"})
    )
    assert output == {"ok": False, "error": "the service did not answer within 1.5 s"}


async def test_webhook_missing_secret_is_an_error_and_nothing_is_sent(
    simulator: Simulator,
    start_bridge: BridgeFactory,
    webhook: WebhookServer,
    utterance: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TEST_WEBHOOK_KEY", raising=False)
    output, _ = await run_tool_call(
        simulator, start_bridge, webhook, utterance, ToolCall("lookup_order", {"order": "1"})
    )
    assert output == {"ok": False, "error": "the tool is not configured on the server"}
    assert webhook.requests == []


async def test_slow_webhook_does_not_block_audio_or_barge_in(
    simulator: Simulator, start_bridge: BridgeFactory, webhook: WebhookServer, utterance: bytes
) -> None:
    released = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2.0)
        released.set()
        return web.json_response({"done": True})

    webhook.routes["slow"] = slow
    long_reply = "A" + "a" * 120 + "h"  # ~ 8 s of audio, streamed in ~2 s
    simulator.scenario = Scenario(
        greeting="",
        turns=[
            Turn(long_reply, tool_calls=(ToolCall("slow_lookup", {}),)),
            Turn("Okay."),
            Turn("Done: {output.status}"),
        ],
    )
    bridge, events = await start_bridge(webhook_config(webhook))
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
        caller.say(utterance)
        await until(lambda: webhook.requests, what="webhook request", timeout=15)
        started = webhook.requests[0]["at"]
        mark = len(caller.heard.times)
        await asyncio.sleep(0.3)
        caller.say(utterance)  # the caller talks over the agent while the tool runs
        await until(lambda: events.of("barge_in"), what="barge-in", timeout=3)
        barge_during_tool = not released.is_set()
        await asyncio.wait_for(released.wait(), 5)
        ended = len(caller.heard.times)
        await until(lambda: simulator.sessions[0].function_outputs, what="output", timeout=5)
    assert barge_during_tool, "barge-in must work while a tool call is running"
    # 20 ms cadence all through the tool call
    times = caller.heard.times[mark:ended]
    intervals = [(b - a) * 1000 for a, b in itertools.pairwise(times)]
    assert times[-1] - started > 1.9
    assert statistics.mean(intervals) == pytest.approx(20.0, abs=1.0)
    assert max(intervals) < 60.0
    # the agent was audible while the tool ran (until the barge-in cleared it)
    frames_before_barge = voiced_frames(caller.heard.pcm[mark * 320 :])
    assert len(frames_before_barge) > 10
    assert json.loads(simulator.sessions[0].function_outputs[0]["output"])["ok"] is True
