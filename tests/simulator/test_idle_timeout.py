"""server_vad idle_timeout_ms: timeout_triggered, a committed silent item, a response."""

from __future__ import annotations

from agi_bridge.simulator import Simulator, Turn
from agi_bridge.simulator.idle import IdleTimer
from tests.simulator.helpers import PCMU_SESSION, fast, open_client, silence, ulaw

IDLE_SESSION = PCMU_SESSION | {
    "audio": {
        "input": {
            "format": {"type": "audio/pcmu"},
            "turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000},
        },
        "output": {"format": {"type": "audio/pcmu"}},
    }
}


def test_idle_timer_unit() -> None:
    timer = IdleTimer(timeout_ms=5000)
    assert timer.due(10_000) is None  # not armed before a response ended
    timer.arm(1000)
    assert timer.due(5999) is None
    assert timer.due(6000) == (1000, 6000)
    assert timer.due(20_000) is None  # once per arming
    timer.arm(7000)
    timer.disarm()
    assert timer.due(20_000) is None
    off = IdleTimer(timeout_ms=None)
    off.arm(0)
    assert off.due(60_000) is None


async def test_silence_after_a_response_triggers_timeout_and_a_new_response() -> None:
    async with Simulator(fast(turns=[Turn("Hello."), Turn("Are you still there?")])) as sim:
        client = await open_client(sim.url)
        await client.update(IDLE_SESSION)
        await client.send("response.create")
        await client.until("response.done")
        await client.append_ulaw(ulaw(silence(4000)))
        await client.append_ulaw(ulaw(silence(3000)))
        events = await client.until("response.done")
        kinds = [e["type"] for e in events]
        timeout = next(e for e in events if e["type"] == "input_audio_buffer.timeout_triggered")
        assert set(timeout) == {"type", "event_id", "audio_start_ms", "audio_end_ms", "item_id"}
        # "roughly the configured timeout": checked at each 20 ms append
        assert 5000 <= timeout["audio_end_ms"] - timeout["audio_start_ms"] < 5020
        assert timeout["audio_start_ms"] == round(sim.sessions[0].responses[0].audio_ms)
        committed = next(e for e in events if e["type"] == "input_audio_buffer.committed")
        assert committed["item_id"] == timeout["item_id"]
        assert (
            kinds.index("input_audio_buffer.timeout_triggered")
            < kinds.index("input_audio_buffer.committed")
            < kinds.index("response.created")
        )
        assert sim.sessions[0].responses[-1].text == "Are you still there?"
        await client.ws.close()


async def test_no_timeout_without_idle_timeout_ms() -> None:
    async with Simulator(fast(turns=[Turn("Hello.")])) as sim:
        client = await open_client(sim.url)
        await client.update(PCMU_SESSION)
        await client.send("response.create")
        await client.until("response.done")
        await client.append_ulaw(ulaw(silence(8000)))
        session = sim.sessions[0]
        await sim.wait_for(lambda: session.received_counts["input_audio_buffer.append"] == 400)
        assert session.sent_counts["input_audio_buffer.timeout_triggered"] == 0
        await client.ws.close()
