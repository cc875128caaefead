"""The Bridge: wires the servers from the config and keeps the registry of live calls.

FastAGI (call identity) ─┐
                         ├─> Call (one per AudioSocket connection) ─> Realtime
AudioSocket (audio)  ────┘            └─> AMI (one shared connection: tools)
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from agi_bridge.admin import add_admin_routes
from agi_bridge.asterisk.admission import Admission
from agi_bridge.asterisk.agi import FastAgiServer, PendingCalls, requested_agent
from agi_bridge.asterisk.ami import AmiClient
from agi_bridge.asterisk.audiosocket import AudioSocketServer
from agi_bridge.asterisk.pending import CallOutcomes
from agi_bridge.call import Call, Observer
from agi_bridge.call.events import EndReason, LiveCall
from agi_bridge.call.ports import CallIdentity, ChannelControl, MediaPort
from agi_bridge.config import Config, split_hostport
from agi_bridge.errors import AriError, ConfigError
from agi_bridge.heap_return import HeapReturn, libc_trim
from agi_bridge.monitoring import Monitoring
from agi_bridge.protocol.agi import AgiRequest
from agi_bridge.providers.base import ProviderConnector
from agi_bridge.providers.gpt_live import live_provider
from agi_bridge.providers.realtime import realtime_provider
from agi_bridge.realtime import Connector, connector
from agi_bridge.transports import audiosocket as audiosocket_transport
from agi_bridge.transports.ari import AriTransport
from agi_bridge.transports.audiosocket import CallAmi

log = logging.getLogger(__name__)

# After the drain ended the remaining calls: time for their hangup frames to go out.
DRAIN_END_GRACE_S = 5.0


def ami_client(cfg: Config) -> AmiClient:
    """An AMI client (not started) for the configured manager user."""
    return AmiClient(
        cfg.ami.host,
        cfg.ami.port,
        cfg.ami.username,
        cfg.ami_secret(),
        action_timeout=cfg.ami.action_timeout_s,
    )


def uses_simulator(cfg: Config) -> bool:
    """True when calls go to the bundled simulator: asked for, or OpenAI without a key."""
    return cfg.uses_simulator()


def check_realtime_key(cfg: Config, env: Mapping[str, str] | None = None) -> None:
    """Refuse to run without a Realtime key unless the simulator was asked for (ConfigError).

    Without this, every call would fail at Realtime (openai/azure reject an empty key).
    """
    env = os.environ if env is None else env
    rt = cfg.realtime
    if rt.provider not in ("openai", "azure", "gpt-live") or env.get(rt.api_key_env):
        return
    if rt.provider == "openai" and rt.simulator_without_key:
        return
    if rt.provider == "gpt-live":  # no bundled stand-in here: the key is the only way
        raise ConfigError(
            f"no GPT-Live key: {rt.api_key_env} is not set", file=cfg.source, key="realtime"
        )
    raise ConfigError(
        f"no Realtime key: {rt.api_key_env} is not set; set it, or ask for the bundled "
        "simulator explicitly (realtime.provider: simulator, or "
        "realtime.simulator_without_key: true)",
        file=cfg.source,
        key="realtime.simulator_without_key",
    )


class Bridge:
    """All listeners of one bridge process. ``async with Bridge(cfg) as b: ...``"""

    def __init__(
        self,
        config: Config,
        *,
        connect: Connector | None = None,
        ami: CallAmi | None = None,
        observers: tuple[Observer, ...] = (),
        simulator_scenario: Any = None,
        reuse_fastagi_port: bool = False,
        http_unix: str = "",
        ari_max_calls: int | None = None,
    ) -> None:
        self.config = config
        self._connect = connect
        self._provider: ProviderConnector | None = None
        self._ami = ami
        self._ami_client: AmiClient | None = None  # the one this bridge opened itself
        self._observers = observers
        self._scenario = simulator_scenario
        self.simulator: Any = None  # agi_bridge.simulator.Simulator when embedded
        limits = config.limits
        self.pending = PendingCalls(
            ttl=limits.registration_ttl_s,
            max_pending=limits.max_pending_registrations,
            max_per_source=limits.max_pending_per_source,
        )
        self.outcomes = CallOutcomes()  # how calls ended: the dialplan's FastAGI status
        self.calls: dict[int, Call] = {}
        # freed pages back to the OS while calls run and after they end (glibc malloc)
        self.heap = HeapReturn(libc_trim())
        self.finished_calls = 0
        self.draining = False
        self._hurry = asyncio.Event()
        host, port = split_hostport(config.listen.fastagi)
        self.fastagi = FastAgiServer(
            self.pending,
            host,
            port,
            accept=self._accept,
            header_timeout=limits.header_timeout_s,
            admission=Admission(
                "FastAGI",
                config.asterisk.addresses,
                max_connections=limits.max_fastagi_connections,
                max_per_source=limits.max_connections_per_source,
            ),
            secret=config.agi_secret(),
            outcomes=self.outcomes,
            advertise=self.audiosocket_address,
            reuse_port=reuse_fastagi_port,
        )
        host, port = split_hostport(config.listen.audiosocket)
        self.audiosocket = AudioSocketServer(
            self._run_call,
            host,
            port,
            max_calls=limits.max_calls,
            admission=Admission(
                "AudioSocket",
                config.asterisk.addresses,
                # Asterisk is one source for all its calls: room for max_calls live calls
                # plus this many sockets still before their UUID (those never hold a call
                # slot, are closed after header_timeout_s and evicted oldest first)
                max_connections=limits.max_calls + limits.max_connections_per_source,
                max_per_source=limits.max_calls + limits.max_connections_per_source,
            ),
            uuid_timeout=limits.header_timeout_s,
        )
        # ARI: Stasis(agi-bridge,...) calls beside AudioSocket (transports/ari.py)
        self.ari: AriTransport | None = None
        if config.ari.enabled:
            self.ari = AriTransport(config, self.start_call, max_calls=ari_max_calls)
        self._idle = asyncio.Event()  # set while no call is live (drain waits on it)
        self._idle.set()
        # records, metrics, /metrics + /healthz, webhook (see monitoring.py)
        self.monitoring = Monitoring(config, http_unix=http_unix)
        if self.monitoring.http is not None and config.admin.enabled:
            add_admin_routes(self.monitoring.http.app, self)  # operator controls, /admin

    async def __aenter__(self) -> Bridge:
        await self.start()
        return self

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self.config.realtime.provider == "gpt-live" and self._connect is None:
            check_realtime_key(self.config)
            self._provider = live_provider(self.config)
        else:
            await self._start_realtime()
        if self._ami is None and self.config.ami.enabled:
            client = ami_client(self.config)
            await client.start()  # keeps reconnecting in the background if Asterisk is down
            self._ami = self._ami_client = client
        await self.fastagi.start()
        await self.audiosocket.start()
        if self.ari is not None:
            try:
                await self.ari.start(self.config.ari.request_timeout_s)
            except AriError as exc:
                # like AMI: keep trying in the background; until then Stasis() fails at
                # once in Asterisk (the app is not registered) and the dialplan falls back
                log.warning("%s; retrying in the background", exc)
        await self.monitoring.start(self)

    async def _start_realtime(self) -> None:
        if self._connect is None:
            check_realtime_key(self.config)
            if uses_simulator(self.config):
                from agi_bridge.simulator import Simulator, demo_scenario

                self.simulator = Simulator(self._scenario or demo_scenario())
                await self.simulator.start()
                log.warning(
                    "no %s set: calls go to the bundled Realtime SIMULATOR at %s "
                    "(a local test double, not the OpenAI service)",
                    self.config.realtime.api_key_env,
                    self.simulator.url,
                )
                self._connect = connector(self.config.realtime, url=self.simulator.url)
            else:
                self._connect = connector(self.config.realtime)
        self._provider = realtime_provider(self._connect)

    def _accept(self, request: AgiRequest) -> str | None:
        """The agent of a FastAGI call: ``routes`` first, then the AGI argument, then
        ``default_agent`` (see Config.route)."""
        wanted = requested_agent(request) or ""
        name, why = self.config.route(
            dnid=request.dnid,
            extension=request.extension,
            context=request.context,
            agi_arg=wanted,
            caller_id=request.callerid,
        )
        if wanted and why == "default_agent":
            log.warning(
                "channel %s asked for unknown agent %r: using %r", request.channel, wanted, name
            )
        log.info("channel %s dnid=%s: agent %r (%s)", request.channel, request.dnid, name, why)
        return name

    def audiosocket_address(self, local_host: str) -> str:
        """Where Asterisk must connect the AudioSocket of a call registered over a FastAGI
        connection that reached us at ``local_host`` (told to the dialplan as
        AGI_BRIDGE_AUDIOSOCKET): this process's listener, at ``listen.audiosocket_advertise``,
        the configured host, or the address Asterisk used for FastAGI when the listener is
        on every address. "" when advertising is off."""
        advertise = self.config.listen.audiosocket_advertise
        if advertise == "off":
            return ""
        host, _ = split_hostport(self.config.listen.audiosocket)
        if advertise:
            host = advertise
        elif host in ("", "0.0.0.0", "::"):
            host = local_host
        port = self.audiosocket.port
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def active_calls(self) -> int:
        return len(self.calls)

    def listener_checks(self) -> dict[str, dict[str, Any]]:
        listen = self.config.listen
        checks = {
            "audiosocket": {"ok": self.audiosocket.serving, "listen": listen.audiosocket},
            "fastagi": {"ok": self.fastagi.serving, "listen": listen.fastagi},
        }
        if self.ari is not None:
            ari = self.config.ari
            checks["ari"] = {
                "ok": self.ari.client.connected.is_set(),
                "app": ari.app,
                "url": ari.url,
                "media": ari.media,
            }
            if self.ari.client.replaced:
                checks["ari"]["detail"] = "application taken over by another websocket"
        if self.draining:
            checks["accepting"] = {"ok": False, "detail": "shutting down: new calls refused"}
        return checks

    async def drain(self, timeout: float) -> int:
        """Shut down gently: refuse new calls at once (FastAGI answers without a UUID,
        AudioSocket with a hangup frame: the dialplan falls back immediately), let live
        calls finish for up to *timeout* seconds (``hurry()`` cuts that short), then end
        the rest with reason ``shutdown``: their dialplan runs its fallback. Returns how
        many calls were handed to the fallback."""
        self.draining = True
        self.fastagi.refuse_new_calls("shutting down")
        self.audiosocket.refuse_new_calls()
        if self.calls:
            log.info(
                "draining: %d live call(s) may finish within %.0f s; new calls are refused",
                len(self.calls),
                timeout,
            )
        if self.ari is not None:
            self.ari.refuse_new_calls()
        idle = asyncio.ensure_future(self._wait_idle(timeout))
        hurry = asyncio.ensure_future(self._hurry.wait())
        try:
            await asyncio.wait({idle, hurry}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()
            hurry.cancel()
        rest = list(self.calls.values())
        for call in rest:
            call.end(EndReason.SHUTDOWN, "the bridge is shutting down")
        if rest:
            log.info("draining: %d call(s) handed to the dialplan's fallback", len(rest))
            await self._wait_idle(DRAIN_END_GRACE_S)
        return len(rest)

    async def _wait_idle(self, timeout: float) -> bool:
        """Wait until no call of any transport is live; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def hurry(self) -> None:
        """End the drain now (a second SIGTERM): live calls go to the fallback at once."""
        self._hurry.set()

    def live_calls(self) -> list[LiveCall]:
        return list(self.calls.values())

    def find_call(self, call_id: str) -> LiveCall | None:
        """The live call with this id (the AudioSocket UUID), or None."""
        for call in self.calls.values():
            if call.call_id == call_id:
                return call
        return None

    async def _run_call(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await audiosocket_transport.run_connection(
            reader,
            writer,
            claim=self.pending.claim,
            ami=self._ami,
            uuid_timeout=self.config.limits.first_frame_timeout_s,
            start_call=self.start_call,
            allow_unregistered=self.config.listen.audiosocket_unregistered == "default_agent",
            is_live=lambda call_id: self.find_call(call_id) is not None,
            record_outcome=self.outcomes.record,
        )

    async def start_call(
        self, identity: CallIdentity, media: MediaPort, control: ChannelControl
    ) -> None:
        """Run one call, from any transport, to its end."""
        assert self._provider is not None, "Bridge.start() first"
        call = Call(
            identity,
            media,
            control,
            config=self.config,
            connect=self._provider,
            observers=self._observers + self.monitoring.observers,
        )
        key = id(call)
        self.calls[key] = call
        self._idle.clear()
        self.heap.calls_changed(len(self.calls))
        try:
            await call.run()
        finally:
            del self.calls[key]
            self.finished_calls += 1
            self.heap.calls_changed(len(self.calls))
            if not self.calls:
                self._idle.set()

    @property
    def ami(self) -> CallAmi | None:
        """The AMI connection calls use (None when AMI is disabled)."""
        return self._ami

    async def close(self, grace: float = 5.0) -> None:
        if self.ari is not None:
            await self.ari.close()
        await self.audiosocket.close(grace)
        await self.monitoring.close()
        await self.fastagi.close()
        if self._ami_client is not None:
            await self._ami_client.close()
        if self.simulator is not None:
            await self.simulator.close()
        self.heap.close()
