"""ARI externalMedia over RTP: one UDP socket per call, µ-law both ways, the bridge paces.

Asterisk's ``UnicastRTP`` channel (chan_rtp) sends the caller's audio to the address the
bridge gave as ``external_host`` and receives on the address it reports back in the
channel variables ``UNICASTRTP_LOCAL_ADDRESS`` / ``UNICASTRTP_LOCAL_PORT``. It forwards
what it gets without re-timing, so the Call releases one 20 ms frame per deadline and
fills gaps with silence (``needs_silence``), as on AudioSocket.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from agi_bridge.call.ports import MediaEvent, MediaFormat
from agi_bridge.errors import MediaError, RtpError
from agi_bridge.protocol.rtp import Audio, RtpReceiver, RtpSender
from agi_bridge.transports.inbox import MediaInbox

log = logging.getLogger(__name__)


class PortRange:
    """UDP ports handed out one per call from ``low..high`` (inclusive)."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self._used: set[int] = set()
        self._next = low

    def bind(self, host: str) -> socket.socket:
        """A UDP socket bound to a free port of the range; MediaError when none is free."""
        size = self.high - self.low + 1
        for _ in range(size):
            port = self._next
            self._next = self.low + (self._next - self.low + 1) % size
            if port in self._used:
                continue
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            self._used.add(port)
            return sock
        raise MediaError(f"no free RTP port in {host}:{self.low}-{self.high}")

    def release(self, port: int) -> None:
        self._used.discard(port)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, port: RtpMediaPort) -> None:
        self.port = port

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.port.datagram_received(data, (str(addr[0]), int(str(addr[1]))))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable after the far end went away: harmless, the call ends
        # through ARI; log it once per call at debug level.
        log.debug("RTP socket error: %s", exc)


class RtpMediaPort:
    """The MediaPort of one ARI call with ``encapsulation=rtp`` (µ-law, 160-byte frames)."""

    format = MediaFormat.ULAW
    needs_silence = True

    def __init__(self, sock: socket.socket, ports: PortRange, *, call_id: str = "") -> None:
        self.sock = sock
        self.local_address: tuple[str, int] = sock.getsockname()[:2]
        self._ports = ports
        self._call_id = call_id
        self.inbox = MediaInbox()
        self.receiver = RtpReceiver()
        self.sender = RtpSender()
        self.remote: tuple[str, int] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self.malformed = 0
        self.foreign = 0  # datagrams from an address other than Asterisk's

    @classmethod
    async def open(cls, host: str, ports: PortRange, *, call_id: str = "") -> RtpMediaPort:
        port = cls(ports.bind(host), ports, call_id=call_id)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(port), sock=port.sock)
        port._transport = transport
        return port

    @property
    def external_host(self) -> str:
        """What ARI's externalMedia ``external_host`` gets: where Asterisk sends RTP."""
        host, port = self.local_address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def set_remote(self, host: str, port: int) -> None:
        """Asterisk's end of the stream (UNICASTRTP_LOCAL_ADDRESS/PORT)."""
        self.remote = (host, port)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.remote is not None and addr[0] != self.remote[0]:
            self.foreign += 1
            return
        try:
            events = self.receiver.feed(data)
        except RtpError as exc:
            # One bad datagram is not the end of a call; a peer sending only garbage is
            # noticed by the caller (silence) and logged here, bounded by the count.
            self.malformed += 1
            if self.malformed <= 3:
                log.warning("[%s] RTP packet dropped: %s", self._call_id, exc)
            return
        for event in events:
            if isinstance(event, Audio):
                self.inbox.put_audio(event.payload)
            # RFC 4733 digits also arrive as ARI ChannelDtmfReceived on the caller's
            # channel; the transport reports that one only, so a digit is never doubled.

    async def receive(self) -> list[MediaEvent]:
        return await self.inbox.get()

    def send_frame(self, frame: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise MediaError("RTP port closed")
        if self.remote is None:
            return  # Asterisk's address not known yet: nothing can be sent
        self._transport.sendto(self.sender.packet(frame), self.remote)

    async def flush(self) -> None:
        """Nothing queues beyond the Call's own buffer on this path."""

    def queued_ms(self) -> int:
        return 0  # chan_rtp plays each packet as it arrives: the bridge paces them

    def end(self, detail: str) -> None:
        self.inbox.end(detail)

    async def close(self) -> None:
        self.inbox.end("media port closed")
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            await asyncio.sleep(0)  # the loop closes the socket on its next turn
            self._ports.release(self.local_address[1])
