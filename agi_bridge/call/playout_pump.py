"""The agent's side of a call: one 20 ms frame per monotonic deadline to the media port,
from the process's shared tick (agi_bridge/ticker.py). A mixin of ``Call`` (call.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from agi_bridge import audio
from agi_bridge.call.conversation import Conversation, Output
from agi_bridge.call.ports import MediaPort
from agi_bridge.call.stats import AudioRecorder, CallStats
from agi_bridge.playout import Pacer
from agi_bridge.ticker import shared as shared_ticker


class PlayoutPump:
    """Conversation playout -> media port; ``Call`` provides the attributes declared here."""

    stats: CallStats
    recorder: AudioRecorder | None
    conversation: Conversation
    _media: MediaPort
    _clock: Callable[[], float]
    _ulaw_port: bool
    _drained: asyncio.Event
    _pacer: Pacer | None

    if TYPE_CHECKING:  # provided by Call (or a sibling mixin): declared for mypy only

        async def _apply(self, outputs: list[Output], *, quiet: bool = False) -> None: ...

    async def _pump_playout(self) -> None:
        """Release one frame per 20 ms deadline. The frames leave from the process's
        shared tick (agi_bridge/ticker.py: one timer for all calls, no wake-up of this
        task per frame); this task only carries out what a released frame makes the
        conversation decide (rare), and raises what the tick hit."""
        ticker = shared_ticker(self._clock)
        pacer = self._pacer = Pacer(self._clock, t0=ticker.anchor())
        playout = self.conversation.playout
        on_released = self.conversation.on_released
        send = self._media.send_frame
        needs_silence = self._media.needs_silence
        clock = self._clock
        stats = self.stats  # not stats.frame_times: the benchmark swaps it for a window
        pending: list[Output] = []
        failed: list[BaseException] = []
        wake = asyncio.Event()

        def tick(now: float) -> None:
            if failed:
                return
            try:
                for _ in range(pacer.due(now)):
                    released = playout.next_frame()
                    if needs_silence or not released.silent:
                        send(released.pcm)
                    if self.recorder is not None:
                        pcm = released.pcm
                        self.recorder.agent_frame(
                            audio.ulaw_to_slin(pcm) if self._ulaw_port else pcm,
                            pacer.skipped_frames,
                        )
                    now = clock()
                    stats.frame_times.append(now)
                    outputs = on_released(released, now)
                    if outputs:
                        pending.extend(outputs)
                        wake.set()
                    if not playout.audible:
                        self._drained.set()
            except Exception as exc:  # this call's error: raised in its own task below
                failed.append(exc)
                wake.set()

        key = ticker.subscribe(tick)
        try:
            while True:
                await wake.wait()
                wake.clear()
                if failed:
                    raise failed[0]
                outputs, pending[:] = pending[:], []
                await self._apply(outputs, quiet=True)
        finally:
            ticker.unsubscribe(key)

    async def wait_drained(self, timeout: float) -> bool:
        """Wait until every queued agent frame has been released to Asterisk."""
        playout = self.conversation.playout
        try:
            async with asyncio.timeout(timeout):
                while playout.audible:
                    self._drained.clear()
                    await self._drained.wait()
        except TimeoutError:
            return False
        return True
