"""ARI externalMedia over chan_websocket: the bridge connects to Asterisk per call.

``externalMedia`` with ``transport=websocket``, ``encapsulation=none``,
``connection_type=server`` creates a ``WebSocket/INCOMING`` channel and reports its
``MEDIA_WEBSOCKET_CONNECTION_ID``; the bridge connects to ``ws://ASTERISK:8088/media/ID``
(sub-protocol ``media``). Binary frames are µ-law both ways; text frames are control
(protocol/chan_websocket.py). Asterisk times what it plays from its own queue; on
barge-in ``flush()`` sends FLUSH_MEDIA, which drops that queue at once.

The Call still sends silence in gaps (``needs_silence = True``): Asterisk 22.10 removed
chan_websocket's silence generation (commit "chan_websocket: Remove silence generation
and frame padding"); with an empty queue it plays nothing, so the phone got no RTP at all
while the agent was quiet (seen here: baresip's recording of a 12 s call was 4.5 s long).
Paced on the same monotonic clock as Asterisk's timer, the queue stays near one frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

import aiohttp

from agi_bridge.call.ports import MediaEvent, MediaFormat
from agi_bridge.errors import MediaError, RtpError
from agi_bridge.protocol.chan_websocket import (
    Command,
    DtmfEnd,
    Error,
    MediaStart,
    MediaXoff,
    MediaXon,
    MessageFormat,
    parse_event,
    serialize_command,
)
from agi_bridge.transports.inbox import MediaInbox

log = logging.getLogger(__name__)

MAX_SEND_BACKLOG = 50  # frames (1 s) waiting for the socket; beyond: the far end is stuck
# Asterisk plays one queued frame per 20 ms tick. After a late wake-up of the Call's pacer
# (it then sends what is due at once) that queue stays longer for good, and every frame
# in it is latency and, on barge-in, audio counted as played but flushed. Silent frames
# are therefore skipped while the estimated queue is longer than this.
MAX_QUEUED_FRAMES = 1.5
FRAME_S = 0.020
CONNECT_TIMEOUT_S = 5.0


class WebsocketMediaPort:
    """The MediaPort of one ARI call with ``transport=websocket`` (µ-law)."""

    format = MediaFormat.ULAW
    needs_silence = True  # see the module docstring: 22.10 sends nothing when idle

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        session: aiohttp.ClientSession,
        control_format: MessageFormat,
        *,
        call_id: str = "",
    ) -> None:
        self._ws = ws
        self._session = session
        self._format = control_format
        self._call_id = call_id
        self.inbox = MediaInbox()
        self.media_start: MediaStart | None = None
        self._started = asyncio.Event()
        self._backlog: deque[bytes | str] = deque()
        self._wakeup = asyncio.Event()
        self._xoff = False
        self._failure: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.frames_sent = 0
        self.silence_skipped = 0
        self._queued = 0.0  # estimate of the frames waiting in Asterisk's queue
        self._last_frame_at: float | None = None

    @classmethod
    async def connect(
        cls, url: str, control_format: MessageFormat, *, call_id: str = ""
    ) -> WebsocketMediaPort:
        """Connect to chan_websocket and wait for its MEDIA_START."""
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        try:
            ws = await asyncio.wait_for(
                session.ws_connect(url, protocols=("media",), autoping=True), CONNECT_TIMEOUT_S
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await session.close()
            raise MediaError(f"chan_websocket connect to {url} failed: {exc}") from exc
        port = cls(ws, session, control_format, call_id=call_id)
        port._tasks = [
            asyncio.create_task(port._read(), name=f"ws-read-{call_id}"),
            asyncio.create_task(port._write(), name=f"ws-write-{call_id}"),
        ]
        try:
            await asyncio.wait_for(port._started.wait(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            await port.close()
            raise MediaError(f"chan_websocket {url}: no MEDIA_START") from None
        if port.media_start is None:
            await port.close()
            raise MediaError(f"chan_websocket {url}: closed before MEDIA_START")
        return port

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                if message.type is aiohttp.WSMsgType.BINARY:
                    self.inbox.put_audio(message.data)
                elif message.type is aiohttp.WSMsgType.TEXT:
                    self._control(message.data)
                elif message.type is aiohttp.WSMsgType.ERROR:
                    break
        except (aiohttp.ClientError, OSError) as exc:
            log.info("[%s] chan_websocket read failed: %s", self._call_id, exc)
        finally:
            self._started.set()
            self.inbox.end(f"chan_websocket closed (code {self._ws.close_code})")
            self._wakeup.set()

    def _control(self, text: str) -> None:
        try:
            event = parse_event(text)
        except RtpError as exc:
            log.warning("[%s] chan_websocket message ignored: %s", self._call_id, exc)
            return
        if isinstance(event, MediaStart):
            if event.format != "ulaw":
                self._failure = f"chan_websocket format {event.format!r}, expected 'ulaw'"
                self.inbox.end(self._failure)
            self.media_start = event
            self._started.set()
        elif isinstance(event, MediaXoff):
            self._xoff = True
        elif isinstance(event, MediaXon):
            self._xoff = False
            self._wakeup.set()
        elif isinstance(event, Error):
            log.warning("[%s] chan_websocket error: %s", self._call_id, event.text)
        elif isinstance(event, DtmfEnd):
            pass  # DTMF written to this channel; callers' digits come from ARI events
        else:
            log.debug("[%s] chan_websocket %s", self._call_id, event)

    async def _write(self) -> None:
        try:
            while True:
                while not self._backlog or (self._xoff and isinstance(self._backlog[0], bytes)):
                    if self._ws.closed:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                item = self._backlog.popleft()
                if isinstance(item, bytes):
                    await self._ws.send_bytes(item)
                    self.frames_sent += 1
                else:
                    await self._ws.send_str(item)
        except (aiohttp.ClientError, OSError, ConnectionError) as exc:
            self._failure = f"chan_websocket write failed: {exc}"
            self.inbox.end(self._failure)

    async def receive(self) -> list[MediaEvent]:
        return await self.inbox.get()

    def send_frame(self, frame: bytes) -> None:
        if self._failure is not None:
            raise MediaError(self._failure)
        if self._ws.closed:
            raise MediaError("chan_websocket closed")
        frames = sum(1 for item in self._backlog if isinstance(item, bytes))
        if frames >= MAX_SEND_BACKLOG:
            raise MediaError(f"chan_websocket not reading: {frames} frames waiting")
        now = time.monotonic()
        if self._last_frame_at is not None:
            played = (now - self._last_frame_at) / FRAME_S
            self._queued = max(0.0, self._queued - played)
        self._last_frame_at = now
        if self._queued > MAX_QUEUED_FRAMES and frame.count(0xFF) == len(frame):
            self.silence_skipped += 1  # µ-law silence: let Asterisk's queue drain
            return
        self._queued += 1.0
        self._backlog.append(frame)
        self._wakeup.set()

    def send_command(self, command: Command) -> None:
        """Queue a control message; it goes out ahead of any frames queued after it."""
        self._backlog.append(serialize_command(command, self._format))
        self._wakeup.set()

    def queued_ms(self) -> int:
        """Audio sent but not yet played by Asterisk (it plays one frame per 20 ms): what
        a late wake-up of the pacer sent ahead, plus what still waits here to be written."""
        queued = self._queued
        if self._last_frame_at is not None:
            queued = max(0.0, queued - (time.monotonic() - self._last_frame_at) / FRAME_S)
        return int(queued * FRAME_S * 1000)

    async def flush(self) -> None:
        """Drop what waits here and what Asterisk queued: the agent stops at the phone."""
        self._backlog = deque(item for item in self._backlog if isinstance(item, str))
        self._queued = 0.0
        self.send_command(Command.FLUSH_MEDIA)

    def end(self, detail: str) -> None:
        self.inbox.end(detail)

    async def close(self) -> None:
        self.inbox.end("media port closed")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            await asyncio.wait_for(self._ws.close(), 2.0)
        await self._session.close()
