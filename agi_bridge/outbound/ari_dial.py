"""``agi-bridge call --transport ari``: the call is placed with ARI (``POST /channels``)
straight into a Stasis application of this call, so media and channel control go
through ARI (externalMedia) instead of FastAGI + AudioSocket + AMI.

The ringing phase ends when the callee answers (the channel enters Stasis and the agent's
call starts) or when the channel is gone: AMI's ``Hangup`` event of the channel (whose
uniqueid is our ``channelId``) carries the cause, mapped to the same outcomes as an AMI
Originate. A mixin of :class:`~agi_bridge.outbound.call.OutboundCall`.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import TYPE_CHECKING, Any

from agi_bridge.asterisk.ami import AmiClient
from agi_bridge.config import Config
from agi_bridge.errors import AriError
from agi_bridge.outbound.result import CallResult, Watcher, _seconds

TRANSPORTS = ("audiosocket", "ari")
HANGUP_EVENT_WAIT_S = 2.0
END_GRACE_S = 5.0

# Q.850 causes of a call that never got answered -> (outcome, text), as ORIGINATE_REASONS
CAUSES: dict[int, tuple[str, str]] = {
    1: ("failed", "unallocated number"),
    3: ("failed", "no route to the destination"),
    16: ("failed", "the far end hung up before answering"),
    17: ("busy", "the destination is busy"),
    18: ("no_answer", "no answer before the ring timeout"),
    19: ("no_answer", "no answer before the ring timeout"),
    21: ("busy", "the destination rejected the call"),
    20: ("failed", "the destination is not registered"),
    27: ("failed", "the destination is out of order"),
    34: ("congestion", "the destination or the network could not take the call"),
    38: ("congestion", "the network is out of order"),
    42: ("congestion", "the destination or the network could not take the call"),
}


def ari_app_name(config: Config, channel_id: str) -> str:
    """``agi-bridge-call-1a2b3c4d``: a Stasis application only this call uses."""
    return f"{config.ari.app}-call-{re.sub(r'[^A-Za-z0-9]', '', channel_id)[:12]}"


def no_optimization(dial: str) -> str:
    """``Local/500@ctx`` -> ``Local/500@ctx/n``. In Stasis the ``;1`` half joins a bridge
    with the externalMedia channel, and Asterisk would optimise the Local pair away
    (the far end's channel replaces ours mid-call); ``/n`` keeps both halves."""
    if not dial.startswith("Local/") or dial.count("/") > 1:
        return dial  # not Local, or it already has options
    return f"{dial}/n"


class AriDial:
    # owned and set up by OutboundCall.__init__ / CallEvents
    dial: str
    agent: str
    ring_timeout_s: float
    caller_id: str
    channel_id: str
    result: CallResult
    call_config: Config
    _call: Any
    _watch: Watcher | None

    _stop_reason: str | None

    if TYPE_CHECKING:  # provided by OutboundCall and CallEvents: declared for mypy only

        async def _wait(self, predicate: Any, deadline: float, *, stop: bool = True) -> Any: ...

        def _channel_gone(self) -> bool: ...

        def _take_cause(self) -> bool: ...

        def _finish(self, outcome: str, detail: str) -> CallResult: ...

        def _line(self, text: str) -> None: ...

        def now(self) -> float: ...

        def _stopped_detail(self) -> str: ...

    async def _ring_via_ari(self, ami: AmiClient, bridge: Any, deadline: float) -> bool:
        """Dial with ARI into this call's Stasis application; True once answered."""
        ari = bridge.ari
        if ari is None:  # pragma: no cover - _configure enables it
            self._finish("failed", "the call's bridge has no ARI transport")
            return False
        params: dict[str, str | int] = {
            "endpoint": no_optimization(self.dial),
            "app": self.call_config.ari.app,
            "appArgs": self.agent,
            "timeout": max(1, round(self.ring_timeout_s)),
            "channelId": self.channel_id,
            # without an originator the new channel has no formats of its own; seen here
            # (22.10.1): a Local channel then offers slin192 and nothing can translate
            "formats": "ulaw",
        }
        if self.caller_id:
            params["callerId"] = self.caller_id
        self._line(
            f"dialing {self.dial} over ARI (agent {self.agent}, rings up to "
            f"{self.ring_timeout_s:g} s)"
        )
        try:
            await ari.client.request("POST", "/channels", params=params)
        except AriError as exc:
            self._finish("failed", f"ARI could not place the call: {exc}")
            return False

        def decided() -> bool:
            return self._call is not None or self._channel_gone()

        if not await self._wait(decided, deadline):  # our timeout or Ctrl-C while it rang
            with contextlib.suppress(AriError):  # gone meanwhile
                await ari.client.hangup(self.channel_id)
            await self._wait(self._channel_gone, time.monotonic() + END_GRACE_S, stop=False)
            self._finish(self._stop_reason or "timeout", self._stopped_detail())
            return False
        if self._call is None:  # gone before it was answered: the cause says why
            await self._wait(self._take_cause, time.monotonic() + HANGUP_EVENT_WAIT_S, stop=False)
            cause = self.result.hangup_cause or 0
            outcome, text = CAUSES.get(cause, ("failed", f"the call failed (cause {cause})"))
            if self.result.hangup_cause:
                text += f" (cause {cause} {self.result.hangup_cause_text})"
            self._finish(outcome, text)
            return False
        self.result.answered = True
        self.result.answered_after_s = _seconds(self.now())
        self.result.channel = self._call.identity.channel
        self._line(f"answered ({self.result.channel})")
        if self._watch is not None:
            self._watch("answered", {"channel": self.result.channel}, self.result.answered_after_s)
        return True
