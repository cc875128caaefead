"""ARI media ports over real sockets: RTP over UDP, chan_websocket over a websocket server
that speaks chan_websocket's messages (as verified in Asterisk's chan_websocket.c)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from agi_bridge.call.ports import CallerAudio, MediaEnded, MediaFormat
from agi_bridge.errors import MediaError
from agi_bridge.protocol.chan_websocket import MessageFormat
from agi_bridge.protocol.rtp import Packet, parse_packet
from agi_bridge.transports.ari_rtp import PortRange, RtpMediaPort
from agi_bridge.transports.ari_websocket import MAX_SEND_BACKLOG, WebsocketMediaPort


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------ RTP


@pytest.fixture
async def rtp() -> AsyncIterator[tuple[RtpMediaPort, socket.socket]]:
    base = free_udp_port()
    port = await RtpMediaPort.open("127.0.0.1", PortRange(base, base + 5))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(2)
    port.set_remote(*peer.getsockname())
    yield port, peer
    await port.close()
    peer.close()


async def test_rtp_caller_audio_in_order(rtp: tuple[RtpMediaPort, socket.socket]) -> None:
    port, peer = rtp
    assert port.format is MediaFormat.ULAW and port.needs_silence
    for seq in (100, 102, 101):  # one packet overtaken on the way
        peer.sendto(
            Packet(0, seq, seq * 160, 7, bytes([seq % 256]) * 160).serialize(), port.local_address
        )
    events: list[Any] = []
    async with asyncio.timeout(2):
        while len(events) < 3:
            events += await port.receive()
    assert events == [CallerAudio(bytes([n]) * 160) for n in (100, 101, 102)]


async def test_rtp_frames_out_are_stamped_pcmu(rtp: tuple[RtpMediaPort, socket.socket]) -> None:
    port, peer = rtp
    port.send_frame(b"\x01" * 160)
    port.send_frame(b"\x02" * 160)
    first = parse_packet(await asyncio.to_thread(peer.recv, 2048))
    second = parse_packet(await asyncio.to_thread(peer.recv, 2048))
    assert (first.payload_type, first.payload, first.marker) == (0, b"\x01" * 160, True)
    assert second.sequence == (first.sequence + 1) & 0xFFFF
    assert second.timestamp == (first.timestamp + 160) & 0xFFFFFFFF


async def test_rtp_garbage_and_strangers_do_not_end_the_call(
    rtp: tuple[RtpMediaPort, socket.socket],
) -> None:
    port, peer = rtp
    peer.sendto(b"\x00\x01", port.local_address)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind(("127.0.0.2", 0))  # not Asterisk's address: ignored
        stranger.sendto(Packet(0, 1, 1, 1, b"\x01" * 160).serialize(), port.local_address)
        await asyncio.sleep(0.05)
    peer.sendto(Packet(0, 5, 0, 9, b"\x7f" * 160).serialize(), port.local_address)
    async with asyncio.timeout(2):
        assert await port.receive() == [CallerAudio(b"\x7f" * 160)]
    assert (port.malformed, port.foreign) == (1, 1)
    port.end("caller hung up")
    assert await port.receive() == [MediaEnded("caller hung up")]


async def test_rtp_port_range_is_exhausted_cleanly() -> None:
    base = free_udp_port()
    ports = PortRange(base, base)
    first = await RtpMediaPort.open("127.0.0.1", ports)
    with pytest.raises(MediaError, match=f"no free RTP port in 127.0.0.1:{base}-{base}"):
        await RtpMediaPort.open("127.0.0.1", ports)
    await first.close()
    again = await RtpMediaPort.open("127.0.0.1", ports)  # released on close
    await again.close()


# ------------------------------------------------------------------------ websocket


class FakeChanWebsocket:
    """The /media/ID end of chan_websocket: MEDIA_START, then binary µ-law both ways."""

    def __init__(self) -> None:
        self.received: list[bytes | str] = []
        self.ws: web.WebSocketResponse | None = None
        self.connected = asyncio.Event()
        self.protocol: str | None = None

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("media",))
        await ws.prepare(request)
        self.protocol = ws.ws_protocol
        self.ws = ws
        cid = request.match_info["cid"]
        await ws.send_str(
            f"MEDIA_START connection_id:{cid} channel:WebSocket/INCOMING/0x1 "
            "channel_id:1.2 format:ulaw optimal_frame_size:160 ptime:20"
        )
        self.connected.set()
        async for message in ws:
            if message.type is WSMsgType.BINARY or message.type is WSMsgType.TEXT:
                self.received.append(message.data)
        return ws


@pytest.fixture
async def chan_ws() -> AsyncIterator[tuple[FakeChanWebsocket, str]]:
    fake = FakeChanWebsocket()
    app = web.Application()
    app.router.add_get("/media/{cid}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield fake, f"ws://127.0.0.1:{port}/media/abc"
    await runner.cleanup()


async def wait_received(fake: FakeChanWebsocket, count: int) -> None:
    async with asyncio.timeout(2):
        while len(fake.received) < count:  # noqa: ASYNC110 - filled by the server handler
            await asyncio.sleep(0.01)


async def test_websocket_media_both_ways_and_flush(
    chan_ws: tuple[FakeChanWebsocket, str],
) -> None:
    fake, url = chan_ws
    port = await WebsocketMediaPort.connect(url, MessageFormat.PLAIN_TEXT)
    try:
        assert fake.protocol == "media"
        assert port.media_start is not None and port.media_start.optimal_frame_size == 160
        assert port.format is MediaFormat.ULAW and port.needs_silence
        assert fake.ws is not None
        await fake.ws.send_bytes(b"\x11" * 160)
        async with asyncio.timeout(2):
            assert await port.receive() == [CallerAudio(b"\x11" * 160)]
        port.send_frame(b"\x22" * 160)
        await wait_received(fake, 1)
        assert fake.received == [b"\x22" * 160]
        await port.flush()
        await wait_received(fake, 2)
        assert fake.received[1] == "FLUSH_MEDIA"
    finally:
        await port.close()


async def test_websocket_xoff_holds_frames_and_a_stuck_peer_is_an_error(
    chan_ws: tuple[FakeChanWebsocket, str],
) -> None:
    fake, url = chan_ws
    port = await WebsocketMediaPort.connect(url, MessageFormat.JSON)
    try:
        assert fake.ws is not None
        await fake.ws.send_str('{"event":"MEDIA_XOFF","channel_id":"1.2"}')
        await asyncio.sleep(0.1)
        for _ in range(MAX_SEND_BACKLOG):
            port.send_frame(b"\x33" * 160)
        await asyncio.sleep(0.1)
        assert fake.received == []  # held while Asterisk's queue is full
        with pytest.raises(MediaError, match="not reading"):
            port.send_frame(b"\x33" * 160)
        await port.flush()  # barge-in: our backlog goes, FLUSH_MEDIA (json) goes out
        await wait_received(fake, 1)
        assert fake.received == ['{"command":"FLUSH_MEDIA"}']
        await fake.ws.send_str('{"event":"MEDIA_XON","channel_id":"1.2"}')
        port.send_frame(b"\x44" * 160)
        await wait_received(fake, 2)
        assert fake.received[1] == b"\x44" * 160
    finally:
        await port.close()


async def test_websocket_closed_by_asterisk_ends_the_call(
    chan_ws: tuple[FakeChanWebsocket, str],
) -> None:
    fake, url = chan_ws
    port = await WebsocketMediaPort.connect(url, MessageFormat.PLAIN_TEXT)
    try:
        assert fake.ws is not None
        await fake.ws.close()
        async with asyncio.timeout(2):
            events = await port.receive()
        assert len(events) == 1 and isinstance(events[0], MediaEnded)
        assert "chan_websocket closed" in events[0].detail
        with pytest.raises(MediaError):
            port.send_frame(b"\x00" * 160)
    finally:
        await port.close()


async def test_websocket_connect_refused_is_a_media_error() -> None:
    closed = free_udp_port()  # nothing listens on this TCP port (very likely)
    with pytest.raises(MediaError, match="chan_websocket connect to"):
        await WebsocketMediaPort.connect(f"ws://127.0.0.1:{closed}/media/x", MessageFormat.JSON)
