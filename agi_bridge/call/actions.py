"""What tools and operators do to a live call: the ``CallControls`` of tools.py (DTMF,
hangup after the goodbye, transfer, agent switch, digit collection) and the admin
interface's controls. A mixin of ``Call`` (call.py): the call's state stays there."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from agi_bridge.call.conversation import Conversation, Output
from agi_bridge.call.events import CallNotActive, EndReason, State
from agi_bridge.call.ports import ChannelControl
from agi_bridge.config import Config, TransferTarget
from agi_bridge.digits import DigitCollector
from agi_bridge.errors import ControlError, ToolError
from agi_bridge.providers import base as p

# After the last frame of the goodbye has left, the phone's jitter buffer still holds a
# few tens of ms; hanging up at once would cut the final syllable.
HANGUP_TAIL_S = 0.3


class CallActions:
    """Tool and operator actions; ``Call`` provides the attributes declared here."""

    call_id: str
    state: State
    conversation: Conversation
    transfer_info: dict[str, Any] | None
    _config: Config
    _control: ChannelControl
    _clock: Callable[[], float]
    _log: logging.LoggerAdapter[logging.Logger]
    _stop: asyncio.Event
    _provider: p.ProviderSession | None
    _digits: DigitCollector
    _digits_changed: asyncio.Event

    if TYPE_CHECKING:  # provided by Call (or a sibling mixin): declared for mypy only

        def end(self, reason: EndReason, detail: str = "") -> None: ...

        def _emit(self, kind: str, **data: Any) -> None: ...

        async def _apply(self, outputs: list[Output], *, quiet: bool = False) -> None: ...

        async def wait_drained(self, timeout: float) -> bool: ...

    async def play_dtmf(self, digit: str) -> None:
        dtmf = self._config.dtmf
        await self._control.send_dtmf(digit, dtmf.duration_ms)
        self.conversation.dtmf_sent(self._clock())  # quiet after a keypress
        self._emit("dtmf_sent", digit=digit)
        # the digit is only queued: wait for it to play, then the inter-digit gap
        await asyncio.sleep((dtmf.duration_ms + dtmf.gap_ms) / 1000)

    async def dtmf_pause(self) -> None:
        await asyncio.sleep(self._config.dtmf.pause_ms / 1000)

    async def end_call(self, reason: str) -> None:
        self._log.info("agent hangs up: %s", reason)
        await self._play_out_last_sentence(self._config.limits.hangup_drain_timeout_s, "hangup")
        self.end(EndReason.AGENT_HANGUP, reason)

    async def _play_out_last_sentence(self, timeout: float, action: str) -> None:
        """Wait until the caller has heard the agent's last words (hangup, transfer).

        A caller who talks over them ("wait, one more thing") cancels the action: the
        ToolError goes back to the model, which answers the caller instead.
        """
        self.conversation.begin_final_words(action)
        if not await self.wait_drained(timeout):
            self._log.warning("audio still queued after the %s drain timeout", action)
        await asyncio.sleep(HANGUP_TAIL_S)
        if self.conversation.final_words_cut(action):
            self._log.info("%s cancelled: the caller interrupted the agent's last words", action)
            raise ToolError(f"{action} cancelled: the caller started speaking; answer them")

    async def transfer(self, name: str, target: TransferTarget, summary: str) -> None:
        """Play out the current sentence, then move the channel in the dialplan.

        Afterwards Asterisk takes the channel away and the media port ends; the call then
        ends as TRANSFERRED (see ``end``). If that does not happen within
        ``transfer_close_timeout_s`` the call ends anyway. Raises ControlError (the call
        goes on) when the move fails.
        """
        limits = self._config.limits
        self._log.info(
            "transfer to %s (%s,%s,%d); summary: %s",
            name,
            target.context,
            target.exten,
            target.priority,
            summary or "-",
        )
        await self._play_out_last_sentence(limits.transfer_drain_timeout_s, "transfer")
        # set before the move: Asterisk may take the channel before the request returns
        self.transfer_info = {
            "destination": name,
            "summary": summary,
            "context": target.context,
            "exten": target.exten,
            "priority": target.priority,
        }
        try:
            await self._control.transfer(target.context, target.exten, target.priority)
        except ControlError as exc:
            self.transfer_info = None
            self._log.warning("transfer to %s failed: %s", name, exc)
            raise
        try:
            async with asyncio.timeout(limits.transfer_close_timeout_s):
                await self._stop.wait()
        except TimeoutError:
            self._log.warning(
                "Asterisk did not take the channel within %.1f s of the transfer",
                limits.transfer_close_timeout_s,
            )
            self.end(EndReason.TRANSFERRED, f"to {name} (media not closed by Asterisk)")

    async def switch_agent(self, name: str) -> None:
        """Hand the conversation to another configured agent (its session, its tools)."""
        if name not in self._config.agents:
            raise ToolError(f"no agent named {name!r}")
        self._live_session()
        await self._apply(self.conversation.switch_agent(name, self._config.agents[name]))

    async def collect_digits(self, max_digits: int, terminator: str, timeout_s: float) -> str:
        """The digits the caller types next (tools.collect_digits_tool): masked in every
        event and log, never sent to the model. Raises ToolError when one already runs."""
        try:
            self._digits.start(
                self._clock(), max_digits=max_digits, terminator=terminator, timeout_s=timeout_s
            )
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        try:
            while self._digits.active and not self._digits.expired(self._clock()):
                deadline = self._digits.next_deadline()
                wait = max(0.0, (deadline or self._clock()) - self._clock())
                self._digits_changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait + 0.01):
                        await self._digits_changed.wait()
        finally:
            done = self._digits.take()
        digits = done.digits if done else ""
        self._log.info("collected %d digits (%s)", len(digits), done.ended if done else "cancelled")
        return digits

    # ------------------------------------------------------------ operator controls

    def _live_session(self) -> p.ProviderSession:
        if self.state is not State.ACTIVE or self._provider is None or self._stop.is_set():
            raise CallNotActive(f"call {self.call_id} is {self.state.value}")
        return self._provider

    async def say(self, text: str, role: Literal["user", "system"] = "user") -> None:
        """Operator: add a message to the conversation, then let the model answer."""
        self._live_session()
        await self._apply(self.conversation.operator_message(role, text))

    async def interrupt(self) -> dict[str, Any]:
        """Operator: stop the agent now (the same cut as a barge-in, plus a cancel)."""
        self._live_session()
        outputs, data = self.conversation.cut("operator_interrupt", cancel=True)
        await self._apply(outputs)
        return data

    async def set_instructions(self, instructions: str) -> None:
        """Operator: replace this call's instructions (a live session update)."""
        self._live_session()
        await self._apply(self.conversation.replace_instructions(instructions))

    def hangup(self, reason: str = "operator") -> None:
        """Operator: end the call now, like the agent's hangup (status completed)."""
        if self.state is State.ENDED:
            raise CallNotActive(f"call {self.call_id} has ended")
        self._log.info("operator hangs up: %s", reason)
        self.end(EndReason.OPERATOR_HANGUP, reason)
