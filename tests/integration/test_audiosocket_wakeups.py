"""AudioSocket wakes the bridge for two frames at a time (SO_RCVLOWAT), over real TCP.

Asterisk sends a 20 ms frame every 20 ms; the bridge sends the model 40 ms at a time. The
kernel holds the first frame of each pair, so the loop wakes half as often; after a pause
(agi_bridge.transports.audiosocket.QUIET_S) every byte wakes it again, so a key press or
a last frame without audio behind it is never held back.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from agi_bridge.audio import SLIN_FRAME_BYTES
from agi_bridge.call.ports import CallerAudio, CallerDtmf, MediaEnded, MediaEvent
from agi_bridge.protocol import audiosocket as asock
from agi_bridge.simulator import Simulator
from agi_bridge.transports import audiosocket as transport
from agi_bridge.transports.audiosocket import AudioSocketMedia

from .conftest import BridgeFactory, make_config
from .test_call_flow import until

FRAME = asock.audio_frame(b"\x01\x00" * (SLIN_FRAME_BYTES // 2))


class Port:
    """An AudioSocketMedia on the accepting side of a real TCP connection."""

    def __init__(self) -> None:
        self.media: AudioSocketMedia | None = None
        self.batches: asyncio.Queue[tuple[float, list[MediaEvent]]] = asyncio.Queue()
        self.ready = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        media = self.media = AudioSocketMedia(reader, writer)
        assert media.hold_frames()
        self.ready.set()
        try:
            while True:
                events = await media.receive()
                await self.batches.put((time.monotonic(), events))
                if any(isinstance(ev, MediaEnded) for ev in events):
                    return
        finally:
            await media.close()

    def wake_bytes(self) -> int:
        assert self.media is not None
        sock = self.media._writer.get_extra_info("socket")
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT))


@pytest.fixture
async def port() -> AsyncIterator[tuple[Port, asyncio.StreamWriter]]:
    port = Port()
    server = await asyncio.start_server(port.serve, "127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    await asyncio.wait_for(port.ready.wait(), 5)
    yield port, writer
    writer.close()
    server.close()
    await server.wait_closed()


async def test_two_frames_per_wakeup(
    port: tuple[Port, asyncio.StreamWriter], monkeypatch: pytest.MonkeyPatch
) -> None:
    p, caller = port
    monkeypatch.setattr(transport, "QUIET_S", 5.0)  # no pause fallback in this test
    assert p.wake_bytes() == transport.WAKE_BYTES == 2 * len(FRAME)
    for _ in range(3):
        caller.write(FRAME)
        await asyncio.sleep(0.05)  # well apart: without the mark each would wake the loop
        assert p.batches.empty(), "a single frame woke the bridge"
        caller.write(FRAME)
        _, events = await asyncio.wait_for(p.batches.get(), 5)
        assert [type(ev) for ev in events] == [CallerAudio, CallerAudio]


async def test_after_a_pause_a_lone_key_press_and_frame_come_through(
    port: tuple[Port, asyncio.StreamWriter], monkeypatch: pytest.MonkeyPatch
) -> None:
    p, caller = port
    monkeypatch.setattr(transport, "QUIET_S", 0.2)
    caller.write(FRAME + FRAME)
    last_data, _ = await asyncio.wait_for(p.batches.get(), 5)
    caller.write(FRAME + asock.dtmf_frame("7"))  # less than the mark, then nothing
    arrived, events = await asyncio.wait_for(p.batches.get(), 5)
    assert [type(ev) for ev in events] == [CallerAudio, CallerDtmf]
    assert arrived - last_data >= 0.15, "held until the pause was noticed"
    assert p.wake_bytes() == 1  # every byte wakes the loop now
    caller.write(asock.dtmf_frame("8"))
    _, events = await asyncio.wait_for(p.batches.get(), 1)
    assert events == [CallerDtmf("8")]
    await asyncio.sleep(0.3)
    assert p.wake_bytes() == 1  # a lone byte after a pause is no stream yet
    # a stream again (data within QUIET_S of the last): two frames a wake-up again
    for _ in range(3):
        caller.write(FRAME)
        await asyncio.sleep(0.02)
    await until(lambda: p.wake_bytes() == transport.WAKE_BYTES, timeout=2, what="holding")


async def test_a_hangup_is_never_held(port: tuple[Port, asyncio.StreamWriter]) -> None:
    p, caller = port
    caller.write(FRAME)  # less than the mark, then the close
    caller.close()
    seen: list[MediaEvent] = []
    while not seen or not isinstance(seen[-1], MediaEnded):
        seen += (await asyncio.wait_for(p.batches.get(), 1))[1]
    assert [type(ev) for ev in seen] == [CallerAudio, MediaEnded]


async def test_the_port_leaves_the_shared_tick_when_the_call_ends(
    port: tuple[Port, asyncio.StreamWriter],
) -> None:
    from agi_bridge import ticker

    p, caller = port
    assert len(ticker.shared()) == 1
    caller.close()
    await asyncio.wait_for(p.batches.get(), 1)
    await until(lambda: len(ticker.shared()) == 0, timeout=2, what="unsubscribed")


async def test_a_key_press_after_the_audio_stopped_reaches_the_model(
    simulator: Simulator, start_bridge: BridgeFactory
) -> None:
    """A Local channel in WaitExten() sends no audio: a digit alone must not wait."""
    bridge, _ = await start_bridge(make_config(greeting=""))
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.audiosocket.port)
    writer.write(asock.uuid_frame(uuid.uuid4()))
    for _ in range(25):  # half a second of audio, then nothing
        writer.write(FRAME)
        await asyncio.sleep(0.02)
    await until(lambda: simulator.sessions, what="session")
    await asyncio.sleep(0.3)
    writer.write(asock.dtmf_frame("4"))
    await until(
        lambda: any(
            e.get("type") == "conversation.item.create" for e in simulator.sessions[0].received
        ),
        timeout=3,
        what="the digit as a text item",
    )
    items = [e for e in simulator.sessions[0].received if e["type"] == "conversation.item.create"]
    assert items[0]["item"]["content"][0]["text"] == "[caller pressed 4]"
    writer.close()
    reader.feed_eof()
