"""The ARI way in: ``Stasis(agi-bridge,AGENT[,key=value...])`` + externalMedia.

On StasisStart of a caller's channel the transport answers it, creates a mixing bridge and
an externalMedia channel (RTP over UDP, or chan_websocket), waits for that channel's own
StasisStart, puts both into the bridge and hands the Call a CallIdentity, a MediaPort and
a ChannelControl. Everything it creates in Asterisk carries the call's id and is removed
when the call ends, also after the events websocket dropped (re-sync on reconnect): no
bridge or externalMedia channel outlives its call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agi_bridge.asterisk.ari import AriClient
from agi_bridge.call.ports import CallIdentity, ChannelControl, MediaPort, Outcome
from agi_bridge.config import Config
from agi_bridge.errors import AriError, BridgeError, MediaError
from agi_bridge.protocol import ari as events
from agi_bridge.protocol.chan_websocket import MessageFormat
from agi_bridge.transports.ari_rtp import PortRange, RtpMediaPort
from agi_bridge.transports.ari_websocket import WebsocketMediaPort

log = logging.getLogger(__name__)

StartCall = Callable[[CallIdentity, MediaPort, ChannelControl], Awaitable[None]]
STATUS_VARIABLE = "AGI_BRIDGE_STATUS"
# Ids of what the transport creates; the prefix lets a re-sync find leftovers.
MEDIA_PREFIX = "agi-bridge-media-"
BRIDGE_PREFIX = "agi-bridge-"
MEDIA_START_TIMEOUT_S = 5.0
CLEANUP_TIMEOUT_S = 5.0


class AriChannelControl:
    """ChannelControl of one ARI call: REST requests on the caller's channel."""

    def __init__(self, client: AriClient, call: AriCall) -> None:
        self._client = client
        self._call = call
        self.released: Outcome | None = None

    async def send_dtmf(self, digit: str, duration_ms: int) -> None:
        await self._client.send_dtmf(self._call.channel_id, digit, duration_ms)

    async def transfer(self, context: str, exten: str, priority: int) -> None:
        await self._client.continue_in_dialplan(self._call.channel_id, context, exten, priority)
        self._call.transferred = True

    async def release(self, outcome: Outcome) -> None:
        if self.released is not None:
            return
        self.released = outcome
        # Shielded: the Call may cancel its tasks as soon as the channel leaves Stasis
        # (which the continue below causes); the clean-up must still run to its end.
        await asyncio.shield(self._release(outcome))

    async def _release(self, outcome: Outcome) -> None:
        status = {Outcome.COMPLETED: "completed", Outcome.FAILED: "failed"}.get(outcome)
        channel = self._call.channel_id
        try:
            if status is not None and not self._call.caller_gone:
                # Before the channel leaves Stasis, so the dialplan after Stasis() sees it.
                await self._client.set_variable(channel, STATUS_VARIABLE, status)
        except AriError as exc:
            log.warning("[%s] %s=%s not set: %s", channel, STATUS_VARIABLE, status, exc)
        if status is not None and not self._call.caller_gone:
            # Continue first, while the channel is still in the bridge: Stasis takes it out
            # itself. (Deleting the bridge first races with the continue: seen here on
            # 22.10.1, the channel then stayed in Stasis until the caller hung up.)
            try:
                await self._client.continue_in_dialplan(channel)
            except AriError as exc:
                log.warning("[%s] continue after Stasis failed: %s", channel, exc)
        await self._call.destroy_media()


class AriCall:
    """What the transport knows about one call: ids of the objects it created, its port."""

    def __init__(self, channel: events.Channel, media_mode: str) -> None:
        self.channel = channel
        self.channel_id = channel.id
        self.bridge_id = f"{BRIDGE_PREFIX}{uuid.uuid4().hex}"
        self.media_id = f"{MEDIA_PREFIX}{uuid.uuid4().hex}"
        self.media_mode = media_mode
        self.media_started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.port: RtpMediaPort | WebsocketMediaPort | None = None
        self.caller_gone = False
        self.transferred = False
        self._removed: set[str] = set()
        self._client: AriClient | None = None

    def ended(self, detail: str) -> None:
        """The caller's channel left Stasis or is gone."""
        if not self.transferred:
            self.caller_gone = True
        if self.port is not None:
            self.port.end(detail)
        if not self.media_started.done():
            self.media_started.set_exception(MediaError(detail))

    async def destroy_media(self) -> None:
        """Delete the bridge and hang up the externalMedia channel; each is marked gone
        only once Asterisk confirmed it (or says 404), so a cancelled attempt is redone."""
        if self._client is None:
            return
        removals: tuple[tuple[str, Callable[[str], Awaitable[None]], str], ...] = (
            ("bridge", self._client.delete_bridge, self.bridge_id),
            ("externalMedia channel", self._client.hangup, self.media_id),
        )
        for what, remove, object_id in removals:
            if object_id in self._removed:
                continue
            try:
                await remove(object_id)
            except AriError as exc:
                if ": 404 " not in str(exc):
                    log.warning("[%s] %s not removed: %s", self.channel_id, what, exc)
                    continue
            self._removed.add(object_id)


class AriTransport:
    """Runs ARI calls: ``start()`` registers the Stasis application, ``close()`` ends it."""

    def __init__(
        self, config: Config, start_call: StartCall, *, max_calls: int | None = None
    ) -> None:
        # serve --workers N: only worker 0 runs ARI, so its Stasis calls get the whole
        # limits.max_calls while its AudioSocket keeps its share (workers.py)
        self.max_calls = config.limits.max_calls if max_calls is None else max_calls
        self.config = config
        self.ari = config.ari
        self._start_call = start_call
        self.client = AriClient(
            self.ari.url,
            self.ari.app,
            self.ari.username,
            config.ari_password(),
            on_event=self._on_event,
            on_reconnect=self.resync,
            request_timeout_s=self.ari.request_timeout_s,
            backoff_max_s=self.ari.reconnect_max_s,
        )
        self._ports = PortRange(self.ari.rtp_port_min, self.ari.rtp_port_max)
        self.calls: dict[str, AriCall] = {}
        self._media: dict[str, AriCall] = {}  # externalMedia channel id -> its call
        self._tasks: set[asyncio.Task[None]] = set()
        self.transport_name = f"ari-{self.ari.media}"
        self.refusing = False  # shutting down: new calls go straight back to the dialplan

    def refuse_new_calls(self) -> None:
        """From now on a new Stasis call gets status failed and continues in the dialplan
        (its fallback) at once; live calls go on."""
        self.refusing = True

    async def start(self, connect_timeout_s: float = 10.0) -> None:
        await self.client.start()
        await self.client.wait_connected(connect_timeout_s)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()

    # ------------------------------------------------------------------ events

    def _on_event(self, event: events.AriEvent) -> None:
        if isinstance(event, events.StasisStart):
            media_call = self._media.get(event.channel.id)
            if media_call is not None:
                if not media_call.media_started.done():
                    media_call.media_started.set_result(None)
                return
            if event.channel.id.startswith(MEDIA_PREFIX):
                return  # an externalMedia channel of an earlier run: the re-sync removes it
            if self.refusing or len(self.calls) >= self.max_calls:
                why = "shutting down" if self.refusing else f"{len(self.calls)} calls"
                log.warning("[%s] refused: %s", event.channel.id, why)
                self._spawn(self._refuse(event.channel.id))
                return
            self._spawn(self._run_call(event))
            return
        if isinstance(event, (events.UnknownEvent, events.ApplicationReplaced)):
            return  # the client handles ApplicationReplaced itself
        call = self.calls.get(event.channel.id)
        if call is None:
            media_call = self._media.get(event.channel.id)
            if media_call is not None and isinstance(
                event, (events.StasisEnd, events.ChannelDestroyed)
            ):
                media_call.ended("externalMedia channel gone")
            return
        if isinstance(event, events.ChannelDtmfReceived):
            if call.port is not None:
                call.port.inbox.put_digit(event.digit)
        elif isinstance(event, events.StasisEnd):
            call.ended("channel left Stasis")
        elif isinstance(event, events.ChannelDestroyed):
            call.ended(f"channel destroyed ({event.cause_txt or event.cause})")
        elif isinstance(event, events.ChannelHangupRequest):
            call.ended("caller hung up")

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refuse(self, channel_id: str) -> None:
        with contextlib.suppress(AriError):
            await self.client.set_variable(channel_id, STATUS_VARIABLE, "failed")
            await self.client.continue_in_dialplan(channel_id)

    # ------------------------------------------------------------------ one call

    async def _run_call(self, start: events.StasisStart) -> None:
        call = AriCall(start.channel, self.ari.media)
        call._client = self.client
        self.calls[call.channel_id] = call
        control = AriChannelControl(self.client, call)
        try:
            identity = self._identity(start)
            await self._set_up(call)
            assert call.port is not None
            log.info(
                "[%s] ARI call %s from %r agent %s (%s)",
                call.channel_id,
                call.channel.name,
                identity.caller_id,
                identity.agent,
                self.transport_name,
            )
            await self._start_call(identity, call.port, control)
        except (BridgeError, OSError) as exc:
            log.warning("[%s] ARI call failed: %s", call.channel_id, exc)
        except Exception:
            log.exception("[%s] ARI call crashed", call.channel_id)
        finally:
            await asyncio.shield(self._finish(call, control))

    async def _finish(self, call: AriCall, control: AriChannelControl) -> None:
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT_S * 3):
                if control.released is None:
                    await control.release(
                        Outcome.CALLER_GONE if call.caller_gone else Outcome.FAILED
                    )
                await call.destroy_media()
                if call.port is not None:
                    await call.port.close()
        except TimeoutError:
            log.warning("[%s] ARI clean-up timed out", call.channel_id)
        finally:
            self.calls.pop(call.channel_id, None)
            self._media.pop(call.media_id, None)

    def _identity(self, start: events.StasisStart) -> CallIdentity:
        agent_arg, variables = events.parse_stasis_args(start.args)
        channel = start.channel
        dnid = variables.get("dnid") or channel.exten
        agent, why = self.config.route(
            dnid=dnid,
            extension=channel.exten,
            context=channel.context,
            agi_arg=agent_arg or "",
            caller_id=channel.caller_number,
        )
        log.debug("[%s] agent %s (%s)", channel.id, agent, why)
        return CallIdentity(
            call_id=channel.id,
            transport=self.transport_name,
            channel=channel.name,
            caller_id=channel.caller_number,
            dnid=dnid,
            agent=agent,
            variables=variables,
        )

    async def _set_up(self, call: AriCall) -> None:
        """Answer, bridge, externalMedia; the port is ready for the Call afterwards."""
        await self.client.answer(call.channel_id)
        await self.client.create_bridge(call.bridge_id, f"agi-bridge/{call.channel_id}")
        self._media[call.media_id] = call
        params = {"channelId": call.media_id, "format": "ulaw"}
        if call.media_mode == "rtp":
            port = await RtpMediaPort.open(self.ari.rtp_host, self._ports, call_id=call.channel_id)
            call.port = port
            params.update(external_host=port.external_host, encapsulation="rtp", transport="udp")
            reply = await self.client.external_media(params)
            variables = _channelvars(reply)
            try:
                port.set_remote(
                    variables["UNICASTRTP_LOCAL_ADDRESS"], int(variables["UNICASTRTP_LOCAL_PORT"])
                )
            except (KeyError, ValueError) as exc:
                raise AriError(f"externalMedia reply lacks UNICASTRTP_LOCAL_*: {exc}") from exc
        else:
            fmt = MessageFormat(self.ari.websocket_control_format)
            params.update(
                encapsulation="none",
                transport="websocket",
                connection_type="server",
                transport_data=f"f({fmt.value})",
            )
            reply = await self.client.external_media(params)
            connection_id = _channelvars(reply).get("MEDIA_WEBSOCKET_CONNECTION_ID", "")
            if not connection_id:
                raise AriError("externalMedia reply lacks MEDIA_WEBSOCKET_CONNECTION_ID")
            call.port = await WebsocketMediaPort.connect(
                f"{self._media_url()}/{connection_id}", fmt, call_id=call.channel_id
            )
        async with asyncio.timeout(MEDIA_START_TIMEOUT_S):
            await call.media_started
        await self.client.add_channels(call.bridge_id, call.channel_id, call.media_id)

    def _media_url(self) -> str:
        if self.ari.websocket_url:
            return self.ari.websocket_url.rstrip("/")
        parts = urlsplit(self.ari.url.rstrip("/"))
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path + "/media", "", ""))

    # ------------------------------------------------------------------ re-sync

    async def resync(self) -> None:
        """After a reconnect: end calls whose channel vanished meanwhile, remove bridges
        and externalMedia channels that no live call owns."""
        live = await self.client.channel_ids()
        for call in list(self.calls.values()):
            if call.channel_id not in live:
                call.ended("channel gone while the ARI events websocket was down")
        owned_bridges = {c.bridge_id for c in self.calls.values()}
        owned_media = {c.media_id for c in self.calls.values()}
        for bridge in await self.client.bridges():
            bridge_id = str(bridge.get("id", ""))
            if bridge_id.startswith(BRIDGE_PREFIX) and bridge_id not in owned_bridges:
                with contextlib.suppress(AriError):
                    await self.client.delete_bridge(bridge_id)
                    log.info("removed leftover bridge %s", bridge_id)
        for channel_id in live:
            if channel_id.startswith(MEDIA_PREFIX) and channel_id not in owned_media:
                with contextlib.suppress(AriError):
                    await self.client.hangup(channel_id)
                    log.info("removed leftover externalMedia channel %s", channel_id)


def _channelvars(reply: Any) -> dict[str, str]:
    variables = reply.get("channelvars") if isinstance(reply, dict) else None
    return {str(k): str(v) for k, v in (variables or {}).items()}
