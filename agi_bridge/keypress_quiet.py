"""Quiet after a keypress: after ``send_dtmf`` the agent does not talk over the menu it
just selected. It may speak again once the callee has finished a turn (the new menu or a
person) or ``quiet_after_dtmf_s`` has passed (a menu that says nothing). Sans-I/O: the
caller passes the monotonic time in; nothing here sleeps.

Where the conversation core uses it (agi_bridge/call/):

* each digit ``send_dtmf`` puts on the line  -> ``on_dtmf_sent(now)``
* the callee's speech ends (``input_audio_buffer.speech_stopped``, i.e. a finished callee
  turn after the keypress)                   -> ``on_callee_speech()``
* before it asks for a response (``response.create`` after the send_dtmf tool result, or
  after a caller event)                      -> ``may_respond(now)``; when False, send the
  function_call_output now but hold the ``response.create`` until ``deadline()`` or the
  next ``on_callee_speech()`` (server VAD then creates the response itself: drop the held
  one), so the model is asked exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_QUIET_AFTER_DTMF_S = 4.0  # the config key: agents.<name>.quiet_after_dtmf_s


@dataclass
class KeypressQuiet:
    """``timeout_s`` 0 turns the policy off (``may_respond`` always True)."""

    timeout_s: float = DEFAULT_QUIET_AFTER_DTMF_S
    _since: float | None = None  # when the last digit went out; None: not quiet

    def on_dtmf_sent(self, now: float) -> None:
        if self.timeout_s > 0:
            self._since = now  # a later digit restarts the wait

    def on_callee_speech(self) -> None:
        self._since = None

    def may_respond(self, now: float) -> bool:
        if self._since is None:
            return True
        if now - self._since >= self.timeout_s:
            self._since = None
            return True
        return False

    def deadline(self) -> float | None:
        """When the quiet ends at the latest (None: not quiet)."""
        return None if self._since is None else self._since + self.timeout_s

    @property
    def quiet(self) -> bool:
        return self._since is not None
