"""The dialplan learns "completed" without AMI: after AudioSocket() it asks the bridge
over FastAGI (``AGI(agi://HOST/status,UUID)``), which answers from what the call
recorded before its hangup frame. Real sockets; AMI disabled, as if it were down."""

from __future__ import annotations

import asyncio

from agi_bridge.simulator import Scenario, Simulator, ToolCall, Turn

from .conftest import BridgeFactory, make_config
from .helpers import registered_caller, until
from .test_fastagi_server import env_block
from .test_listener_hardening import agi_call


async def status(port: int, call_id: str) -> dict[str, str] | None:
    """Asterisk's side of AGI(agi://HOST/status,UUID): the variables the bridge set."""
    return await agi_call(port, env_block("status", [call_id]))


async def test_completed_reaches_the_dialplan_without_ami(
    simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    goodbye = "Thank you for calling, goodbye."
    simulator.scenario = Scenario(
        greeting="",
        turns=[Turn(goodbye, tool_calls=(ToolCall("hangup", {"reason": "caller done"}),))],
    )
    bridge, events = await start_bridge(make_config(greeting=""))
    assert bridge.ami is None  # no AMI at all: nothing can Setvar the channel
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        caller.say(utterance)
        await asyncio.wait_for(caller.closed.wait(), 20)  # the hangup frame
        # what the dialplan does the moment AudioSocket() returns
        answer = await status(bridge.fastagi.port, str(caller.uuid))
    finally:
        await caller.close()
    assert answer == {"AGI_BRIDGE_STATUS": "completed"}
    # asked once: a second question (or a stranger's guess) learns nothing
    assert not await status(bridge.fastagi.port, str(caller.uuid))
    await until(lambda: events.of("end"), what="call end")
    assert events.of("end")[0]["reason"] == "agent_hangup"


async def test_failed_call_status_and_unknown_calls(
    simulator: Simulator, start_bridge: BridgeFactory
) -> None:
    simulator.scenario = Scenario(refuse_connect=503)
    bridge, _ = await start_bridge()
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        await asyncio.wait_for(caller.closed.wait(), 10)
        answer = await status(bridge.fastagi.port, str(caller.uuid))
    finally:
        await caller.close()
    assert answer == {"AGI_BRIDGE_STATUS": "failed"}
    assert not await status(bridge.fastagi.port, "00000000-0000-4000-8000-000000000000")
    assert not await status(bridge.fastagi.port, "not-a-uuid")


async def test_status_is_answered_while_draining(
    simulator: Simulator, start_bridge: BridgeFactory
) -> None:
    simulator.scenario = Scenario(greeting="Hello there, one moment please.")
    bridge, _ = await start_bridge()
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        await until(lambda: any(caller.heard.pcm), 10, "the greeting")
        drained = asyncio.create_task(bridge.drain(timeout=0.5))
        await asyncio.wait_for(caller.closed.wait(), 10)
        answer = await status(bridge.fastagi.port, str(caller.uuid))
        await drained
    finally:
        await caller.close()
    assert answer == {"AGI_BRIDGE_STATUS": "failed"}  # handed to the fallback
