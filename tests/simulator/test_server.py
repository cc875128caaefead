"""The Simulator object: lifecycle, waiting, bounded records, the CLI entry point."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed

from agi_bridge.simulator import Simulator, run_simulator
from tests.simulator.helpers import PCMU_SESSION, fast, open_client, silence, ulaw


async def test_close_ends_open_sessions_with_1001() -> None:
    sim = Simulator(fast())
    await sim.start()
    assert sim.url == f"ws://127.0.0.1:{sim.port}/v1/realtime?model=gpt-realtime"
    client = await open_client(sim.url)
    await sim.close()
    with pytest.raises(ConnectionClosed) as info:
        await client.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert sim.sessions[0].closed


async def test_wait_for_returns_the_value_or_times_out(sim: Simulator) -> None:
    client = await open_client(sim.url)
    session = await sim.wait_for(lambda: sim.sessions and sim.sessions[0])
    assert session is sim.sessions[0]
    with pytest.raises(TimeoutError):
        await sim.wait_for(lambda: session.responses, timeout=0.05)
    await client.send("response.create")
    await sim.wait_for(lambda: session.responses and session.responses[0].status == "completed")
    assert session.sent_counts["response.done"] == 1


async def test_records_and_caller_audio_are_bounded() -> None:
    async with Simulator(fast(), max_records=50, keep_caller_audio_ms=1000) as sim:
        client = await open_client(sim.url)
        await client.update(PCMU_SESSION)
        await client.append_ulaw(ulaw(silence(4000)))  # 200 appends
        session = sim.sessions[0]
        await sim.wait_for(lambda: session.received_counts["input_audio_buffer.append"] == 200)
        assert len(session.received) <= 50
        assert session.received[-1]["type"] == "input_audio_buffer.append"  # newest kept
        assert len(session.caller_audio) == 16000  # 1 s of slin16 at 8 kHz
        assert session.caller_audio_ms == 4000


async def test_run_simulator_serves_until_cancelled() -> None:
    ready: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(run_simulator("127.0.0.1", 0, None, on_ready=ready.put_nowait))
    url = await asyncio.wait_for(ready.get(), 5)
    client = await open_client(url)
    await client.send("response.create")
    heard = ""
    while "simulator" not in heard:  # the demo greeting says what it is
        heard += (await client.expect("response.output_audio_transcript.delta"))["delta"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
