"""ARI media calls inside the bridge runner, without ARI's control plane.

The benchmark has no Asterisk, so nothing sends StasisStart and nothing answers REST
requests. What costs CPU per frame on the ARI paths is the media port and the call core
behind it, and those are exactly what production uses here: an ``RtpMediaPort`` (µ-law
RTP over UDP, its remote set to the benchmark's synthetic RTP peer, as the transport sets
it to ``UNICASTRTP_LOCAL_ADDRESS/PORT``) or a ``WebsocketMediaPort`` connected to the
benchmark's synthetic chan_websocket server, handed to ``Bridge.start_call`` with a
``CallIdentity`` of transport ``ari-rtp`` / ``ari-websocket`` and a ChannelControl that
only records what the call asked of the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from typing import Any

from agi_bridge.app import Bridge
from agi_bridge.call.ports import CallIdentity, Outcome
from agi_bridge.errors import BridgeError
from agi_bridge.protocol.chan_websocket import MessageFormat
from agi_bridge.transports.ari_rtp import PortRange, RtpMediaPort
from agi_bridge.transports.ari_websocket import WebsocketMediaPort

log = logging.getLogger("bench.media_calls")

TRANSPORTS = ("ari-rtp", "ari-websocket")
RTP_HOST = "127.0.0.1"


class RecordingControl:
    """A ChannelControl with no channel behind it: it records, and never fails."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, str]] = []
        self.released: Outcome | None = None

    async def send_dtmf(self, digit: str, duration_ms: int) -> None:
        self.actions.append(("dtmf", digit))

    async def transfer(self, context: str, exten: str, priority: int) -> None:
        self.actions.append(("transfer", f"{context},{exten},{priority}"))

    async def release(self, outcome: Outcome) -> None:
        self.actions.append(("release", outcome.value))
        self.released = outcome


class EphemeralPorts(PortRange):
    """A ``PortRange`` whose ports the kernel picks: the benchmark must not collide with
    a bridge or an Asterisk running on this machine."""

    def __init__(self) -> None:
        super().__init__(0, 0)

    def bind(self, host: str) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.setblocking(False)
        return sock

    def release(self, port: int) -> None:
        pass


class MediaCalls:
    """The runner's ARI media calls: started by the ``media_call`` command, ended at quit."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.ports: dict[str, RtpMediaPort | WebsocketMediaPort] = {}
        self.controls: dict[str, RecordingControl] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._rtp_ports = EphemeralPorts()

    async def start(self, request: dict[str, Any]) -> dict[str, Any]:
        """``{"transport": "ari-rtp", "peer": [host, port]}`` or
        ``{"transport": "ari-websocket", "url": "ws://.../media/ID"}``: open the port,
        start the call, reply with the call id (and the RTP port's own address)."""
        transport = request.get("transport")
        call_id = str(request.get("call_id") or f"bench-{transport}-{next(self._ids)}")
        reply: dict[str, Any] = {"ok": True, "call_id": call_id}
        port: RtpMediaPort | WebsocketMediaPort
        try:
            if transport == "ari-rtp":
                host, peer_port = request["peer"]
                port = await RtpMediaPort.open(RTP_HOST, self._rtp_ports, call_id=call_id)
                port.set_remote(str(host), int(peer_port))
                reply["local"] = list(port.local_address)
            elif transport == "ari-websocket":
                fmt = MessageFormat(request.get("control_format", "plain-text"))
                port = await WebsocketMediaPort.connect(str(request["url"]), fmt, call_id=call_id)
            else:
                return {"error": f"unknown transport {transport!r}, expected one of {TRANSPORTS}"}
        except (KeyError, ValueError, TypeError) as exc:
            return {"error": f"bad media_call request {request}: {exc!r}"}
        except (BridgeError, OSError) as exc:
            return {"error": f"{transport} media port for {call_id} failed: {exc}"}
        identity = CallIdentity(
            call_id=call_id, transport=transport, channel=f"bench/{call_id}", caller_id="bench"
        )
        control = RecordingControl()
        self.ports[call_id] = port
        self.controls[call_id] = control
        task = asyncio.create_task(self._run(identity, port, control), name=f"call-{call_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return reply

    async def _run(
        self,
        identity: CallIdentity,
        port: RtpMediaPort | WebsocketMediaPort,
        control: RecordingControl,
    ) -> None:
        try:
            await self.bridge.start_call(identity, port, control)
        except Exception:
            log.exception("[%s] media call crashed", identity.call_id)
        finally:
            await port.close()  # the Call closed it already; this covers a crash before
            self.ports.pop(identity.call_id, None)

    def summary(self) -> dict[str, Any]:
        """Live media calls and what the ended ones were released with."""
        released: dict[str, int] = {}
        for control in self.controls.values():
            if control.released is not None:
                key = control.released.value
                released[key] = released.get(key, 0) + 1
        return {"live": len(self.ports), "started": len(self.controls), "released": released}

    async def close(self, grace: float) -> None:
        """End every media call the way a hang-up does (the port reports MediaEnded)."""
        for port in list(self.ports.values()):
            port.end("bench runner quits")
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
