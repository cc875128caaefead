"""The process's AMI connection (AmiClient): supervisor with backoff, bounded actions."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from panoramisk.actions import Action

from agi_bridge.asterisk.ami.manager import BridgeManager, ManagerFactory
from agi_bridge.asterisk.ami.message import AmiMessage, EventCallback
from agi_bridge.errors import AmiError
from agi_bridge.protocol import dtmf

__all__ = ["AmiClient"]

log = logging.getLogger("agi_bridge.asterisk.ami")

_OK_RESPONSES = frozenset({"success", "follows", "goodbye"})


class AmiClient:
    """The process's AMI connection: reconnects forever, every action bounded.

    Every action raises :class:`AmiError` when it times out (``action_timeout``), when
    Asterisk answers ``Response: Error`` (the message names AMI's ``Message``), when the
    connection is down (at once, nothing is queued), when the connection drops before the
    answer, or when an argument cannot be sent (a line break in a header value).
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        action_timeout: float = 5.0,
        reconnect_backoff: tuple[float, float] = (0.5, 10.0),
        connect_timeout: float = 5.0,
        ping_interval: float = 20.0,
        stable_after: float = 30.0,
        manager_factory: ManagerFactory | None = None,
    ) -> None:
        low, high = reconnect_backoff
        if not 0 < low <= high:
            raise ValueError(f"reconnect_backoff must be 0 < min <= max, got {reconnect_backoff}")
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret  # never logged, never in repr
        self.action_timeout = action_timeout
        self.reconnect_backoff = (low, high)
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        # A connection must stay up this long before the backoff starts again from the
        # minimum: a peer that accepts the login and drops at once is retried ever slower.
        self.stable_after = stable_after
        self._factory: ManagerFactory = manager_factory or BridgeManager
        self._manager: BridgeManager | None = None
        self._up = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[tuple[str, EventCallback]] = []
        self.last_error = ""  # why the last connect/login attempt failed (never the secret)
        self.connects = 0  # successful logins: the first one, then one per reconnect

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<AmiClient {self.username}@{self.host}:{self.port} {state}>"

    # ------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        """True while logged in."""
        m = self._manager
        return m is not None and bool(m.authenticated) and not m.lost.done()

    async def start(self) -> None:
        """Start the connection supervisor and wait for its first attempt.

        Returns once logged in or once the first attempt failed (bounded by
        ``connect_timeout``); never raises for an unreachable Asterisk: the supervisor
        keeps retrying with backoff and actions fail with AmiError meanwhile.
        """
        if self._task is not None:
            raise RuntimeError("AmiClient already started")
        self._first_attempt = asyncio.Event()
        self._task = asyncio.create_task(self._supervise(), name="ami-supervisor")
        await self._first_attempt.wait()

    async def wait_connected(self) -> None:
        """Wait until logged in (bound it with ``asyncio.timeout``)."""
        while not self.connected:
            await self._up.wait()
            if not self.connected:
                await asyncio.sleep(0)  # dropped again before we woke up

    async def close(self) -> None:
        """Stop reconnecting and close the socket; later actions raise AmiError."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._manager is not None:
            self._drop(self._manager)
        # Let the transport run its connection_lost so the socket is really closed.
        await asyncio.sleep(0)

    async def __aenter__(self) -> AmiClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _supervise(self) -> None:
        low, high = self.reconnect_backoff
        loop = asyncio.get_running_loop()
        delay = low
        failures = 0  # connect/login attempts failed in a row
        flaps = 0  # connections in a row that dropped before stable_after
        try:
            while True:
                manager = await self._connect_once(failures)
                self._first_attempt.set()
                if manager is None:
                    failures += 1
                else:
                    failures = 0
                    self._manager = manager
                    self.connects += 1
                    self._up.set()
                    level = logging.INFO if flaps == 0 else logging.DEBUG
                    log.log(
                        level, "AMI connected to %s:%d as %s", self.host, self.port, self.username
                    )
                    up_at = loop.time()
                    reason = await self._watch(manager)
                    self._drop(manager)
                    lasted = loop.time() - up_at
                    if lasted >= self.stable_after:
                        flaps, delay = 0, low
                    else:
                        flaps += 1
                    # Loud for the first drop and every tenth of a flapping series.
                    level = logging.WARNING if flaps <= 1 or flaps % 10 == 0 else logging.DEBUG
                    log.log(
                        level,
                        "AMI connection to %s:%d lost after %.1fs (%s); reconnecting in %.3gs%s",
                        self.host,
                        self.port,
                        lasted,
                        reason,
                        delay,
                        f" ({flaps} short connections in a row)" if flaps > 1 else "",
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, high)
        finally:
            self._first_attempt.set()
            if self._manager is not None:
                self._drop(self._manager)

    async def _connect_once(self, failures: int) -> BridgeManager | None:
        """Connect and log in, bounded by connect_timeout; a logged-in manager or None."""
        loop = asyncio.get_running_loop()
        manager = self._factory(
            host=self.host,
            port=self.port,
            username=self.username,
            secret=self._secret,
            loop=loop,
            events="on",
        )
        manager.register_event("*", self._on_event)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await manager.connect()
                response = await manager.login_result
        except (OSError, TimeoutError) as exc:
            manager.close()
            what = (
                f"timed out after {self.connect_timeout}s"
                if isinstance(exc, TimeoutError)
                else f"{type(exc).__name__}: {exc}"
            )
            self.last_error = f"connect failed: {what}"
            self._log_failure(failures, "AMI connect to %s:%d failed: %s", what)
            return None
        except BaseException:
            manager.close()
            raise
        if response is None or not response.success:
            manager.close()
            why = (
                "connection closed during login"
                if response is None
                else (response.get("Message") or response.get("Response") or "refused")
            )
            self.last_error = f"login as {self.username} failed: {why}"
            self._log_failure(failures, "AMI login to %s:%d as %s failed: %s", self.username, why)
            return None
        return manager

    def _log_failure(self, failures: int, fmt: str, *args: object) -> None:
        # A long outage would log every few seconds; say it loudly the first time and
        # every tenth attempt, quietly in between.
        level = logging.WARNING if failures % 10 == 0 else logging.DEBUG
        log.log(level, fmt, self.host, self.port, *args)

    async def _watch(self, manager: BridgeManager) -> str:
        """Wait until the connection ends; Ping while idle. Returns the reason."""
        while True:
            done, _ = await asyncio.wait({manager.lost}, timeout=self.ping_interval)
            if done:
                return manager.lost.result()
            try:
                await self._send(manager, {"Action": "Ping"})
            except AmiError as exc:
                return f"keepalive failed: {exc}"

    def _drop(self, manager: BridgeManager) -> None:
        if self._manager is manager:
            self._manager = None
            self._up.clear()
        manager.close()  # fails its unanswered actions with AmiError

    # ------------------------------------------------------------------ events

    def add_event_listener(self, pattern: str, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` for events whose name matches *pattern*.

        *pattern* is a case-insensitive glob (``"Hangup"``, ``"DTMF*"``, ``"*"``).
        Listeners belong to the client, not to a connection, so they survive
        reconnects. Callbacks run in the event loop and must not block; an exception is
        logged and does not affect other listeners or the connection. Returns a function
        that removes the listener.
        """
        entry = (pattern.lower(), callback)
        self._listeners.append(entry)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(entry)

        return remove

    def _on_event(self, _manager: Any, message: Any) -> None:
        if not self._listeners:
            return
        event = AmiMessage.from_panoramisk(message)
        name = event.event.lower()
        for pattern, callback in list(self._listeners):
            if not fnmatch.fnmatchcase(name, pattern):
                continue
            try:
                result: object = callback(event)
            except Exception:
                log.exception("AMI event listener %r failed on %s", callback, event.event)
                continue
            if inspect.isawaitable(result):
                # Async callbacks would be fire-and-forget tasks; refuse them loudly.
                if inspect.iscoroutine(result):
                    result.close()
                log.error(
                    "AMI event listener %r returned an awaitable; use a sync callback", callback
                )

    # ------------------------------------------------------------------ actions

    async def send_action(self, fields: Mapping[str, object]) -> AmiMessage:
        """Send any action (header name -> str/int, or a list for repeated headers)."""
        name = str(fields.get("Action", "")) or "?"
        _check_fields(name, fields)
        manager = self._manager
        if manager is None or not self.connected:
            raise AmiError(f"AMI not connected to {self.host}:{self.port}: {name} not sent")
        return await self._send(manager, fields)

    async def _send(self, manager: BridgeManager, fields: Mapping[str, object]) -> AmiMessage:
        name = str(fields.get("Action", "?"))
        action = Action(dict(fields), as_list=False)
        # as_list=False here too: protocol.send() overwrites action.as_list with it.
        future = manager.send_action(action, as_list=False)
        try:
            response = await asyncio.wait_for(future, self.action_timeout)
        except TimeoutError:
            # wait_for cancelled the future; forget the ActionID so a late answer (or an
            # OriginateResponse event carrying it) is not swallowed by a dead entry.
            responses = getattr(manager.protocol, "responses", None)
            if isinstance(responses, dict):
                responses.pop(action.id, None)
            raise AmiError(
                f"AMI {name} timed out after {self.action_timeout}s (ActionID {action.id})"
            ) from None
        if isinstance(response, list):  # only if a custom manager ignored as_list
            response = response[0]
        message = AmiMessage.from_panoramisk(response)
        if message.response.lower() not in _OK_RESPONSES:
            detail = message.message or message.response or "no response status"
            raise AmiError(f"AMI {name} failed: {detail}")
        return message

    async def play_dtmf(self, channel: str, digit: str, duration_ms: int = 250) -> None:
        """PlayDTMF one digit to the far end of *channel* (one action per digit)."""
        if not dtmf.is_digit(digit):
            raise AmiError(f"AMI PlayDTMF: invalid DTMF digit {digit!r} (one of 0-9 * # A-D)")
        if not 0 < duration_ms <= 10_000:
            raise AmiError(f"AMI PlayDTMF: duration_ms must be 1..10000, got {duration_ms}")
        await self.send_action(
            {
                "Action": "PlayDTMF",
                "Channel": _need(channel, "PlayDTMF", "channel"),
                "Digit": digit,
                "Duration": int(duration_ms),
            }
        )

    async def hangup(self, channel: str, cause: int = 16) -> None:
        """Hangup *channel* with Q.850 *cause* (16 = normal clearing)."""
        await self.send_action(
            {"Action": "Hangup", "Channel": _need(channel, "Hangup", "channel"), "Cause": cause}
        )

    async def setvar(self, channel: str, variable: str, value: str) -> None:
        """Setvar on *channel* (a channel is required: an empty one would set a global)."""
        await self.send_action(
            {
                "Action": "Setvar",
                "Channel": _need(channel, "Setvar", "channel"),
                "Variable": _need(variable, "Setvar", "variable"),
                "Value": value,
            }
        )

    async def getvar(self, channel: str, variable: str) -> str | None:
        """Getvar on *channel*; None when the variable is unset or empty."""
        response = await self.send_action(
            {
                "Action": "Getvar",
                "Channel": _need(channel, "Getvar", "channel"),
                "Variable": _need(variable, "Getvar", "variable"),
            }
        )
        return response.get("Value") or None

    async def redirect(self, channel: str, context: str, exten: str, priority: int = 1) -> None:
        """Redirect *channel* to ``context,exten,priority`` of the dialplan."""
        await self.send_action(
            {
                "Action": "Redirect",
                "Channel": _need(channel, "Redirect", "channel"),
                "Context": _need(context, "Redirect", "context"),
                "Exten": _need(exten, "Redirect", "exten"),
                "Priority": priority,
            }
        )

    async def originate(
        self,
        channel: str,
        *,
        exten: str | None = None,
        context: str | None = None,
        priority: int = 1,
        application: str | None = None,
        data: str | None = None,
        timeout_ms: int = 30_000,
        caller_id: str | None = None,
        variables: Mapping[str, str] | None = None,
        channel_id: str | None = None,
        other_channel_id: str | None = None,
        account: str | None = None,
    ) -> AmiMessage:
        """Originate, always ``Async: true``: returns the "successfully queued" response.

        Give ``exten`` + ``context`` (+ ``priority``) or ``application`` (+ ``data``).
        The outcome arrives later as an ``OriginateResponse`` event with the same
        ActionID as the returned response (``response.action_id``); ``channel_id`` sets
        the new channel's Uniqueid so Hangup events can be matched to it.
        """
        fields: dict[str, object] = {
            "Action": "Originate",
            "Channel": _need(channel, "Originate", "channel"),
            "Async": "true",
            "Timeout": int(timeout_ms),
        }
        if application is not None:
            if exten is not None or context is not None:
                raise AmiError("AMI Originate: give exten/context or application, not both")
            fields["Application"] = _need(application, "Originate", "application")
            if data is not None:
                fields["Data"] = data
        elif exten is not None and context is not None:
            fields["Exten"] = _need(exten, "Originate", "exten")
            fields["Context"] = _need(context, "Originate", "context")
            fields["Priority"] = priority
        else:
            raise AmiError("AMI Originate: needs exten and context, or application")
        optional = {
            "CallerID": caller_id,
            "ChannelId": channel_id,
            "OtherChannelId": other_channel_id,
            "Account": account,
        }
        fields.update({k: v for k, v in optional.items() if v is not None})
        if variables:
            for key in variables:
                if not key or "=" in key:
                    raise AmiError(f"AMI Originate: invalid variable name {key!r}")
            fields["Variable"] = [f"{k}={v}" for k, v in variables.items()]
        return await self.send_action(fields)


def _need(value: str, action: str, what: str) -> str:
    if not value:
        raise AmiError(f"AMI {action}: {what} must not be empty")
    return value


def _check_fields(action: str, fields: Mapping[str, object]) -> None:
    """Refuse what would break the ``Key: Value\\r\\n`` framing (header injection)."""
    if not fields.get("Action"):
        raise AmiError("AMI action without an Action header")
    for key, value in fields.items():
        if not key or any(c in key for c in ":\r\n") or key.strip() != key:
            raise AmiError(f"AMI {action}: invalid header name {key!r}")
        values: Iterable[object] = value if isinstance(value, list | tuple) else (value,)
        for item in values:
            if not isinstance(item, str | int):
                raise AmiError(f"AMI {action}: header {key} must be str or int, not {item!r}")
            if isinstance(item, str) and any(c in item for c in "\r\n\0"):
                raise AmiError(f"AMI {action}: header {key} contains a line break")
