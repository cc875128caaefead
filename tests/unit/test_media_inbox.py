"""The bounded inbox behind the ARI media ports."""

from __future__ import annotations

import asyncio

from agi_bridge.call.ports import CallerAudio, CallerDtmf, MediaEnded
from agi_bridge.transports.inbox import MediaInbox


async def test_events_come_out_in_order_and_the_end_stays() -> None:
    inbox = MediaInbox()
    inbox.put_audio(b"a")
    inbox.put_digit("5")
    inbox.put_audio(b"b")
    assert await inbox.get() == [CallerAudio(b"a"), CallerDtmf("5"), CallerAudio(b"b")]
    inbox.end("gone")
    inbox.end("second reason is ignored")
    inbox.put_audio(b"late")
    assert await inbox.get() == [MediaEnded("gone")]
    assert await inbox.get() == [MediaEnded("gone")]


async def test_oldest_audio_is_dropped_never_digits() -> None:
    inbox = MediaInbox(max_audio=2)
    inbox.put_audio(b"1")
    inbox.put_digit("#")
    inbox.put_audio(b"2")
    inbox.put_audio(b"3")
    assert await inbox.get() == [CallerDtmf("#"), CallerAudio(b"2"), CallerAudio(b"3")]
    assert inbox.audio_dropped == 1


async def test_digits_are_bounded_too() -> None:
    inbox = MediaInbox(max_digits=1)
    inbox.put_digit("1")
    inbox.put_digit("2")
    assert await inbox.get() == [CallerDtmf("1")]
    assert inbox.digits_dropped == 1


async def test_get_waits_for_something() -> None:
    inbox = MediaInbox()
    waiter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    inbox.put_audio(b"x")
    assert await asyncio.wait_for(waiter, 1) == [CallerAudio(b"x")]
