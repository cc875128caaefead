"""Asterisk's side of the ARI media paths, for the benchmark (no Asterisk needed).

- :class:`RtpPeer` plays one ``UnicastRTP`` channel (chan_rtp): µ-law RTP every 20 ms,
  paced on monotonic deadlines, to the bridge's RTP port; the bridge's packets are timed
  on arrival.
- :class:`ChanWebsocketServer` plays chan_websocket: the bridge connects to
  ``ws://HOST:PORT/media/<connection id>`` (sub-protocol ``media``), the
  :class:`WebsocketPeer` of that id sends ``MEDIA_START`` (plain-text, as chan_websocket
  does by default), then binary µ-law frames every 20 ms; it times the bridge's binary
  frames and honours ``FLUSH_MEDIA`` by dropping its (modelled) playout queue.

Both offer what bench_calls.py uses of a ``VirtualCaller``: ``heard`` (arrival times;
``heard.pcm`` is µ-law here), ``closed``, ``say(slin16 pcm)`` and ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from agi_bridge.audio import ULAW_FRAME_BYTES, slin_to_ulaw, ulaw_silence
from agi_bridge.errors import RtpError
from agi_bridge.protocol.rtp import Audio, RtpReceiver, RtpSender
from agi_bridge.virtual_caller import Heard

HOST = "127.0.0.1"
FRAME_S = 0.020
ULAW_SILENCE_FRAME = ulaw_silence(20)
QUEUE_LENGTH_MAX = 1000  # chan_websocket's queue of frames from the app (see protocol/)
CLOSE_TIMEOUT_S = 2.0

Request = Callable[..., Awaitable[dict[str, Any]]]  # BridgeProcess.request and the like


def split_at_pauses(times: list[float], pause_s: float = 1.0) -> list[list[float]]:
    """Arrival times cut into runs at gaps longer than ``pause_s``.

    On chan_websocket the bridge sends agent audio only (Asterisk fills the gaps), so the
    gaps between two agent turns are pauses, not late frames: pacing is measured within a
    run. Agent turns are seconds apart here; a stall longer than 100 ms is already
    counted by the bridge's pacer (late or skipped frames)."""
    runs: list[list[float]] = []
    for t in times:
        if runs and t - runs[-1][-1] <= pause_s:
            runs[-1].append(t)
        else:
            runs.append([t])
    return runs


class _Peer:
    """The microphone and the ear of one synthetic call: µ-law frames out every 20 ms
    (speech where queued, silence otherwise), arrival times of the bridge's frames."""

    def __init__(self, *, keep_audio: bool = False) -> None:
        self.heard = Heard()
        self.keep_audio = keep_audio
        self.closed = asyncio.Event()
        self.sent_frames = 0
        self._mic: deque[bytes] = deque()
        self._tasks: list[asyncio.Task[None]] = []

    def say(self, pcm: bytes) -> None:
        """Queue slin16 8 kHz speech; it goes out as µ-law, one 20 ms frame per deadline."""
        ulaw = slin_to_ulaw(pcm)
        ulaw += ULAW_SILENCE_FRAME[: (-len(ulaw)) % ULAW_FRAME_BYTES]
        for i in range(0, len(ulaw), ULAW_FRAME_BYTES):
            self._mic.append(ulaw[i : i + ULAW_FRAME_BYTES])

    @property
    def speaking(self) -> bool:
        return bool(self._mic)

    def _heard_frame(self, now: float, payload: bytes) -> None:
        self.heard.times.append(now)
        if len(payload) != ULAW_FRAME_BYTES:
            self.heard.bad_sizes.append(len(payload))
        if self.keep_audio:
            self.heard.pcm += payload

    async def _send(self, frame: bytes) -> None:
        raise NotImplementedError

    async def _send_loop(self) -> None:
        # monotonic deadlines t0 + n * 20 ms: a late wake-up sends at once, no drift
        t0 = time.monotonic()
        n = 0
        while not self.closed.is_set():
            await self._send(self._mic.popleft() if self._mic else ULAW_SILENCE_FRAME)
            self.sent_frames += 1
            n += 1
            await asyncio.sleep(max(0.0, t0 + n * FRAME_S - time.monotonic()))

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await task


# ------------------------------------------------------------------------------ RTP


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, peer: RtpPeer) -> None:
        self.peer = peer

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.peer.datagram_received(data)

    def error_received(self, exc: Exception) -> None:
        self.peer.errors += 1


class RtpPeer(_Peer):
    """One UnicastRTP channel. RTP has no end-of-call signal: ``closed`` is set by
    ``close()`` only (in production the call ends through ARI)."""

    def __init__(self, *, keep_audio: bool = False) -> None:
        super().__init__(keep_audio=keep_audio)
        self.sender = RtpSender()
        self.receiver = RtpReceiver()
        self.address: tuple[str, int] = ("", 0)
        self.remote: tuple[str, int] | None = None
        self.malformed = 0
        self.errors = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def open(self, host: str = HOST) -> tuple[str, int]:
        """Bind the peer's UDP socket; returns its address (for the bridge's set_remote)."""
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _RtpProtocol(self), local_addr=(host, 0)
        )
        self.address = self._transport.get_extra_info("sockname")[:2]
        return self.address

    def start(self, remote: tuple[str, int]) -> None:
        """The bridge's RTP port is known: start sending."""
        self.remote = remote
        self._tasks.append(asyncio.create_task(self._send_loop()))

    async def _send(self, frame: bytes) -> None:
        if self._transport is not None and self.remote is not None:
            self._transport.sendto(self.sender.packet(frame), self.remote)

    def datagram_received(self, data: bytes) -> None:
        now = time.monotonic()
        try:
            events = self.receiver.feed(data)
        except RtpError:
            self.malformed += 1
            return
        for event in events:
            if isinstance(event, Audio):
                self._heard_frame(now, event.payload)

    async def close(self) -> None:
        self.closed.set()
        await self._stop_tasks()
        if self._transport is not None:
            self._transport.close()
            self._transport = None


# --------------------------------------------------------------------- chan_websocket


class WebsocketPeer(_Peer):
    """One chan_websocket channel (``WebSocket/INCOMING``) with its connection id."""

    def __init__(self, connection_id: str, *, keep_audio: bool = False) -> None:
        super().__init__(keep_audio=keep_audio)
        self.connection_id = connection_id
        self.commands: Counter[str] = Counter()
        self.flushed_frames = 0  # queued agent frames FLUSH_MEDIA dropped
        self.max_queue = 0
        self.overflow = 0  # frames beyond chan_websocket's queue limit (it drops them)
        self._queue_empty_at = 0.0  # when Asterisk would have played out all queued frames
        self._ws: web.WebSocketResponse | None = None
        self.connected = asyncio.Event()

    def media_start(self) -> str:
        cid = self.connection_id
        return (
            f"MEDIA_START connection_id:{cid} channel:WebSocket/INCOMING/bench-{cid} "
            f"channel_id:bench-{cid} format:ulaw optimal_frame_size:{ULAW_FRAME_BYTES} ptime:20"
        )

    async def serve(self, ws: web.WebSocketResponse) -> None:
        """Run the connection the bridge opened until either side closes it."""
        self._ws = ws
        await ws.send_str(self.media_start())
        self.connected.set()
        self._tasks.append(asyncio.create_task(self._send_loop()))
        try:
            async for message in ws:
                if message.type is WSMsgType.BINARY:
                    now = time.monotonic()
                    self._queue_frame(now)
                    self._heard_frame(now, message.data)
                elif message.type is WSMsgType.TEXT:
                    self._command(message.data)
                elif message.type is WSMsgType.ERROR:
                    break
        finally:
            self.closed.set()

    def _queue_frame(self, now: float) -> None:
        """Model chan_websocket's playout queue: it plays one queued frame per 20 ms."""
        depth = max(0, round((self._queue_empty_at - now) / FRAME_S))
        if depth >= QUEUE_LENGTH_MAX:
            self.overflow += 1
            return
        self._queue_empty_at = max(now, self._queue_empty_at) + FRAME_S
        self.max_queue = max(self.max_queue, depth + 1)

    def _command(self, text: str) -> None:
        text = text.strip()
        if text.startswith("{"):
            try:
                name = str(json.loads(text).get("command", "?"))
            except (ValueError, AttributeError):
                name = "?"
        else:
            name = text.partition(" ")[0]
        self.commands[name] += 1
        if name == "FLUSH_MEDIA":
            now = time.monotonic()
            self.flushed_frames += max(0, round((self._queue_empty_at - now) / FRAME_S))
            self._queue_empty_at = now

    async def _send(self, frame: bytes) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.send_bytes(frame)

    async def close(self) -> None:
        """Hang up: chan_websocket closes the websocket."""
        self.closed.set()
        await self._stop_tasks()
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                await asyncio.wait_for(self._ws.close(), CLOSE_TIMEOUT_S)


class ChanWebsocketServer:
    """Asterisk's HTTP server for chan_websocket media connections, one peer per call."""

    def __init__(self, host: str = HOST) -> None:
        self.host = host
        self.port = 0
        self.peers: dict[str, WebsocketPeer] = {}
        self.unknown = 0  # connections to an id no peer has
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/media/{connection_id}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    def new_peer(self, *, keep_audio: bool = False) -> WebsocketPeer:
        peer = WebsocketPeer(uuid.uuid4().hex, keep_audio=keep_audio)
        self.peers[peer.connection_id] = peer
        return peer

    def url(self, peer: WebsocketPeer) -> str:
        return f"ws://{self.host}:{self.port}/media/{peer.connection_id}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = self.peers.get(request.match_info["connection_id"])
        if peer is None or peer.connected.is_set():
            self.unknown += 1
            raise web.HTTPNotFound(text="no such media connection\n")
        ws = web.WebSocketResponse(protocols=("media",), autoping=True)
        await ws.prepare(request)
        await peer.serve(ws)
        return ws

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.peers.values()), return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


# ------------------------------------------------------------------------- set-up


async def start_ari_peer(
    transport: str,
    request: Request,
    ws_server: ChanWebsocketServer | None = None,
    *,
    keep_audio: bool = False,
) -> RtpPeer | WebsocketPeer:
    """Asterisk's side of one ARI call, and the bridge's call on it (``media_call``).
    ``request(cmd=..., ...)`` sends a command to the bridge runner and returns its reply."""
    if transport == "ari-rtp":
        rtp = RtpPeer(keep_audio=keep_audio)
        address = await rtp.open()
        reply = await request(cmd="media_call", transport=transport, peer=list(address))
        if "error" in reply:
            await rtp.close()
            raise RuntimeError(f"media_call: {reply['error']}")
        rtp.start((str(reply["local"][0]), int(reply["local"][1])))
        return rtp
    if transport == "ari-websocket":
        if ws_server is None:
            raise ValueError("ari-websocket needs a ChanWebsocketServer")
        ws = ws_server.new_peer(keep_audio=keep_audio)
        reply = await request(cmd="media_call", transport=transport, url=ws_server.url(ws))
        if "error" in reply:
            await ws.close()
            raise RuntimeError(f"media_call: {reply['error']}")
        return ws
    raise ValueError(f"not an ARI media transport: {transport!r}")
