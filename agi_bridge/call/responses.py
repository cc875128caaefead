"""At most one response at a time on the provider's side: a state table, h11 style.

A wish for a response while one is requested or active is remembered ("+more") and sent
when that one ends; a caller who speaks (or an operator who cuts) drops the wish.
"""

from __future__ import annotations

import enum
import logging


class Resp(enum.Enum):
    IDLE = "idle"  # no response on the service side
    REQUESTED = "requested"  # Respond sent, not started yet
    ACTIVE = "active"  # the service is producing a response
    REQUESTED_MORE = "requested+more"  # ...and another one is wanted after it
    ACTIVE_MORE = "active+more"


class RespEvent(enum.Enum):
    WANT = "want"  # the conversation wants the model to speak
    STARTED = "started"  # ResponseStarted
    ENDED = "ended"  # ResponseEnded
    BUSY = "busy"  # the service refused a Respond: one was active that we did not see
    DROP_WISH = "drop_wish"  # the caller spoke / an operator cut: no deferred response
    LOST = "lost"  # the session is gone


_I, _R, _A, _RM, _AM = Resp.IDLE, Resp.REQUESTED, Resp.ACTIVE, Resp.REQUESTED_MORE, Resp.ACTIVE_MORE
# (state, event) -> (next state, send Respond now). A pair not listed keeps the state.
RESPONSE_TABLE: dict[tuple[Resp, RespEvent], tuple[Resp, bool]] = {
    (_I, RespEvent.WANT): (_R, True),
    (_R, RespEvent.WANT): (_RM, False),
    (_A, RespEvent.WANT): (_AM, False),
    (_I, RespEvent.STARTED): (_A, False),  # the service answered a caller turn itself
    (_R, RespEvent.STARTED): (_A, False),
    (_RM, RespEvent.STARTED): (_AM, False),
    (_A, RespEvent.ENDED): (_I, False),
    (_AM, RespEvent.ENDED): (_R, True),
    (_I, RespEvent.BUSY): (_AM, False),
    (_R, RespEvent.BUSY): (_AM, False),
    (_RM, RespEvent.BUSY): (_AM, False),
    (_A, RespEvent.BUSY): (_AM, False),
    (_RM, RespEvent.DROP_WISH): (_R, False),
    (_AM, RespEvent.DROP_WISH): (_A, False),
}


class ResponseTracker:
    """At most one response is active on the service side; more wishes wait for it."""

    def __init__(self, log: logging.LoggerAdapter[logging.Logger]) -> None:
        self.state = Resp.IDLE
        self.active_id = ""
        self._log = log

    def feed(self, event: RespEvent) -> bool:
        """Apply *event*; True when a Respond must be sent now."""
        if event is RespEvent.LOST:
            new, send = Resp.IDLE, False
        else:
            new, send = RESPONSE_TABLE.get((self.state, event), (self.state, False))
        if new is not self.state:
            self._log.debug("response %s -(%s)-> %s", self.state.value, event.value, new.value)
            self.state = new
        return send

    @property
    def busy(self) -> bool:
        return self.state is not Resp.IDLE
