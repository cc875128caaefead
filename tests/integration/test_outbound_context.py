"""Per-call context for `agi-bridge call`: --var, {caller_id}/{dnid}, and the lookup
webhook before the call (a real local HTTP service; no Asterisk needed for this part)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from agi_bridge.lookup import values_from_result
from agi_bridge.outbound import OutboundCall

from .helpers import WebhookServer, config

AGENTS = """
tools:
  crm:
    description: customer record by phone number
    parameters: {type: object, properties: {}}
    url: {url}/crm
    timeout_s: 2
default_agent: sales
agents:
  sales:
    instructions: "Customer: {lookup_name}, tier {lookup_tier}. Order {order}. Raw: {lookup}"
    greeting: "Hello {lookup_name}, this is {caller_id}."
    lookup_webhook: crm
"""


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookServer]:
    server = WebhookServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def outbound(server: WebhookServer) -> OutboundCall:
    cfg = config(AGENTS.replace("{url}", f"http://127.0.0.1:{server.port}"))
    cfg = dataclasses.replace(cfg, ami=dataclasses.replace(cfg.ami, enabled=True))  # not used
    return OutboundCall(
        cfg,
        "5551234",
        agent="sales",
        goal="Confirm order {order} with {lookup_name}.",
        caller_id="5550100",
        greeting="Hello {lookup_name}, this is {caller_id}.",
        variables={"order": "A17"},
    )


async def test_lookup_fills_the_prompt_before_the_call(webhook: WebhookServer) -> None:
    async def crm(request: web.Request) -> web.Response:
        return web.json_response({"name": "Ann Lee", "tier": 2, "vip": True, "notes": ["x"]})

    webhook.routes["crm"] = crm
    call = outbound(webhook)
    await call._lookup()
    [request] = webhook.requests
    assert request["json"]["arguments"] == {
        "order": "A17",
        "caller_id": "5550100",
        "dnid": "5551234",
    }
    agent = call.call_config.agents["sales"]
    assert agent.instructions.startswith("Customer: Ann Lee, tier 2. Order A17. Raw: {")
    assert agent.greeting == "Hello Ann Lee, this is 5550100."
    assert call.goal == call.result.goal == "Confirm order A17 with Ann Lee."


async def test_a_failed_lookup_leaves_placeholders_and_the_call_goes_on(
    webhook: WebhookServer,
) -> None:
    async def crm(request: web.Request) -> web.Response:
        return web.json_response({"error": "down"}, status=503)

    webhook.routes["crm"] = crm
    call = outbound(webhook)
    await call._lookup()
    agent = call.call_config.agents["sales"]
    assert agent.instructions.startswith(
        "Customer: {lookup_name}, tier {lookup_tier}. Order A17. Raw: \n"
    )
    assert call.goal == "Confirm order A17 with {lookup_name}."


def test_values_from_result() -> None:
    assert values_from_result({"ok": False, "error": "x"}) == {"lookup": ""}
    assert values_from_result({"ok": True, "body": "plain text"}) == {"lookup": "plain text"}
    values = values_from_result({"ok": True, "body": {"a": 1, "b": None, "c-d": 2, "e": False}})
    assert values == {
        "lookup": '{"a": 1, "b": null, "c-d": 2, "e": false}',
        "lookup_a": "1",
        "lookup_e": "false",
    }
