"""panoramisk's Manager and protocol, tamed: one connection each, no self-reconnect, no
blind pinger, unanswered actions failed instead of replayed (see the package docstring)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol

from agi_bridge.errors import AmiError

__all__ = ["BridgeManager", "ManagerFactory"]

# The Login future has panoramisk's own done-callback, which calls result() on it: failing
# it would raise inside that callback. A lost connection resolves ``login_result`` instead.
_UNFAILABLE = ("login",)


class _AmiProtocol(AMIProtocol):  # type: ignore[misc]  # panoramisk is untyped
    """panoramisk's protocol, but unanswered actions fail instead of being replayed."""

    def close(self) -> None:
        responses: dict[str, Any] = getattr(self, "responses", None) or {}
        for key, action in list(responses.items()):
            name = str(action.get("Action", "?"))
            if name.lower() in _UNFAILABLE or action.future.done():
                continue
            responses.pop(key, None)
            action.future.set_exception(
                AmiError(f"AMI connection lost before the response to {name}")
            )
        super().close()


class BridgeManager(Manager):  # type: ignore[misc]  # panoramisk is untyped
    """A panoramisk Manager for one connection: no self-reconnect, no blind pinger.

    ``login_result`` resolves with the Login response (None if the connection ended
    first); ``lost`` resolves with a reason when the connection ends.
    """

    defaults: ClassVar[dict[str, Any]] = {**Manager.defaults, "protocol_factory": _AmiProtocol}
    pinger: Any  # set by Manager: the call_later handle of its pinger

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        loop: asyncio.AbstractEventLoop = self.loop
        self.login_result: asyncio.Future[Any] = loop.create_future()
        self.lost: asyncio.Future[str] = loop.create_future()

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        # On failure panoramisk would schedule its own reconnect; the supervisor awaits
        # the same task and handles the error instead.
        if f.cancelled() or f.exception() is not None:
            return
        super().connection_made(f)

    def login(self, future: asyncio.Future[Any]) -> bool:
        ok = bool(super().login(future))
        if not self.login_result.done():
            self.login_result.set_result(future.result())
        return ok

    def ping(self) -> None:
        """Disabled: AmiClient pings and checks the answer."""

    async def send_awaiting_actions(self, *_: Any) -> None:
        """Disabled: unanswered actions failed when the connection closed."""
        self.awaiting_actions.clear()

    def connection_lost(self, exc: Any) -> None:
        # Deliberately not calling super(): it schedules an uncancellable reconnect.
        self._connected = False
        self.authenticated = False
        if self.pinger is not None:
            self.pinger.cancel()
            self.pinger = None
        if exc is None:
            reason = "closed by Asterisk"
        elif isinstance(exc, BaseException):
            reason = f"{type(exc).__name__}: {exc}"
        else:
            reason = "Asterisk shut down"  # the Shutdown event
        self._finish(reason)

    def close(self) -> None:
        super().close()
        self.authenticated = False
        self._finish("closed")

    def _finish(self, reason: str) -> None:
        if not self.login_result.done():
            self.login_result.set_result(None)
        if not self.lost.done():
            self.lost.set_result(reason)


ManagerFactory = Callable[..., BridgeManager]
