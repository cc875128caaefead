"""Who may start a call over AudioSocket: a UUID registered over FastAGI, never a UUID
that nobody registered (unless configured), never a UUID of a call already live."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

from agi_bridge.config import Config
from agi_bridge.simulator import Simulator
from agi_bridge.virtual_caller import VirtualCaller
from tests.integration.conftest import BridgeFactory, make_config
from tests.integration.helpers import registered_caller, until


def refusing_config() -> Config:
    cfg = make_config()
    return dataclasses.replace(
        cfg, listen=dataclasses.replace(cfg.listen, audiosocket_unregistered="refuse")
    )


async def test_an_unregistered_uuid_gets_a_hangup_frame_and_no_model_session(
    start_bridge: BridgeFactory, simulator: Simulator
) -> None:
    bridge, events = await start_bridge(refusing_config())
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as stranger:
        await asyncio.wait_for(stranger.closed.wait(), 5)
        assert stranger.heard.hangup_at is not None  # a hangup frame, not a reset
        assert stranger.heard.times == []  # not a single frame of agent audio
    assert events.of("start") == []
    assert simulator.handshakes == 0  # no model session was opened


async def test_a_registered_uuid_is_served(start_bridge: BridgeFactory) -> None:
    bridge, events = await start_bridge(refusing_config())
    caller = await registered_caller(bridge.fastagi.port, bridge.audiosocket.port)
    try:
        await until(lambda: events.of("start"), what="the registered call to start")
        assert events.of("start")[0]["channel"] == "PJSIP/alice-00000001"
    finally:
        await caller.close()


async def test_a_uuid_of_a_live_call_is_refused(start_bridge: BridgeFactory) -> None:
    bridge, events = await start_bridge()  # default_agent: unregistered calls allowed
    call_uuid = uuid.uuid4()
    async with VirtualCaller("127.0.0.1", bridge.audiosocket.port, call_uuid=call_uuid):
        await until(lambda: events.of("start"), what="the first call to start")
        async with VirtualCaller("127.0.0.1", bridge.audiosocket.port, call_uuid=call_uuid) as twin:
            await asyncio.wait_for(twin.closed.wait(), 5)
            assert twin.heard.hangup_at is not None
        assert len(events.of("start")) == 1
        assert bridge.active_calls == 1  # the first call goes on
