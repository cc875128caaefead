"""Turn detection on the audio timeline: energy VAD, commits, transcripts, barge-in."""

from __future__ import annotations

import numpy as np

from agi_bridge.simulator import Scenario, Simulator, Turn
from agi_bridge.simulator.vad import EnergyVad
from tests.simulator.helpers import PCMU_SESSION, fast, open_client, silence, ulaw, voiced

TRANSCRIBED = PCMU_SESSION | {
    "audio": {
        "input": {
            "format": {"type": "audio/pcmu"},
            "transcription": {"model": "gpt-live-transcribe"},
        },
        "output": {"format": {"type": "audio/pcmu"}},
    }
}


def test_energy_vad_unit() -> None:
    vad = EnergyVad(8000, silence_ms=500, prefix_padding_ms=300)
    assert vad.feed(silence(1000)) == []
    events = vad.feed(np.concatenate([voiced(1200), silence(800)]))
    # Loud from 1000 ms; started after 60 ms, reported with 300 ms of padding.
    assert [(e.kind, e.ms) for e in events] == [("start", 700), ("stop", 2700)]


def test_energy_vad_holds_through_short_pauses() -> None:
    vad = EnergyVad(8000)
    events = vad.feed(np.concatenate([voiced(400), silence(300), voiced(400), silence(600)]))
    assert [e.kind for e in events] == ["start", "stop"]


async def test_silence_does_not_trigger(sim: Simulator) -> None:
    client = await open_client(sim.url)
    await client.update(PCMU_SESSION)
    await client.append_ulaw(ulaw(silence(3000)))
    session = sim.sessions[0]
    await sim.wait_for(lambda: session.received_counts["input_audio_buffer.append"] == 150)
    assert session.speech_started_count == 0
    assert session.caller_audio_bytes == 24000 and session.caller_audio_ms == 3000
    assert len(session.caller_audio) == 48000  # kept decoded, slin16
    assert session.received[-1]["audio"] == 160  # payload recorded as its size
    await client.ws.close()


async def test_speech_turn_commits_transcribes_and_responds() -> None:
    scenario = fast(turns=[Turn("Sure.", caller_text="I would like my balance")])
    async with Simulator(scenario) as sim:
        client = await open_client(sim.url)
        await client.update(TRANSCRIBED)
        await client.append_ulaw(ulaw(silence(500), voiced(1400), silence(700)))
        events = await client.until("response.done")
        kinds = [e["type"] for e in client.seen]
        started = next(e for e in events if e["type"] == "input_audio_buffer.speech_started")
        stopped = next(e for e in events if e["type"] == "input_audio_buffer.speech_stopped")
        committed = next(e for e in events if e["type"] == "input_audio_buffer.committed")
        assert started["audio_start_ms"] == 200  # 500 ms of lead-in minus 300 ms padding
        assert stopped["audio_end_ms"] == 2400  # speech ended at 1900, plus 500 ms of silence
        assert started["item_id"] == stopped["item_id"] == committed["item_id"]
        assert kinds.index("input_audio_buffer.committed") < kinds.index("response.created")
        done = client.find("conversation.item.input_audio_transcription.completed")
        assert done["transcript"] == "I would like my balance"
        deltas = [
            e["delta"]
            for e in client.seen
            if e["type"] == "conversation.item.input_audio_transcription.delta"
        ]
        assert "".join(deltas) == "I would like my balance"
        session = sim.sessions[0]
        assert session.speech_started_count == 1 and session.committed_count == 1
        assert session.responses[0].trigger == "turn_detection"
        assert session.responses[0].text == "Sure."
        await client.ws.close()


async def test_default_transcript_names_the_duration(sim: Simulator) -> None:
    client = await open_client(sim.url)
    await client.update(TRANSCRIBED)
    await client.append_ulaw(ulaw(voiced(1100), silence(600)))
    done = await client.expect("conversation.item.input_audio_transcription.completed")
    assert done["transcript"] == "[caller spoke for 1.6 s]"  # 1100 ms + 500 ms of silence
    await client.ws.close()


async def test_create_response_false_only_commits(sim: Simulator) -> None:
    client = await open_client(sim.url)
    await client.update(
        {
            "type": "realtime",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "turn_detection": {"type": "server_vad", "create_response": False},
                }
            },
        }
    )
    await client.append_ulaw(ulaw(voiced(800), silence(600)))
    await client.expect("input_audio_buffer.committed")
    await client.append_ulaw(ulaw(silence(200)))
    await sim.wait_for(lambda: sim.sessions[0].received_counts["input_audio_buffer.append"] == 80)
    assert sim.sessions[0].responses == []
    await client.ws.close()


async def test_manual_commit_and_clear(sim: Simulator) -> None:
    client = await open_client(sim.url)
    session = PCMU_SESSION | {
        "audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": None}}
    }
    await client.update(session)
    await client.send("input_audio_buffer.commit")
    assert (await client.expect("error"))["error"]["code"] == "input_audio_buffer_commit_empty"
    await client.append_ulaw(ulaw(voiced(1000)))
    await client.send("input_audio_buffer.commit")
    committed = await client.expect("input_audio_buffer.committed")
    added = await client.expect("conversation.item.added")
    assert added["item"]["id"] == committed["item_id"]
    assert added["item"]["role"] == "user"
    await client.append_ulaw(ulaw(voiced(500)))
    await client.send("input_audio_buffer.clear")
    await client.expect("input_audio_buffer.cleared")
    await client.send("input_audio_buffer.commit")
    assert (await client.expect("error"))["error"]["code"] == "input_audio_buffer_commit_empty"
    assert sim.sessions[0].speech_started_count == 0  # no VAD without turn detection
    assert sim.sessions[0].responses == []
    await client.ws.close()


async def test_pcm24k_input_is_decoded_for_vad(sim: Simulator) -> None:
    client = await open_client(sim.url)  # default session: audio/pcm at 24 kHz
    pcm = np.concatenate([voiced(800, rate=24000), silence(600, rate=24000)]).astype("<i2")
    await client.append_ulaw(pcm.tobytes(), chunk=960)
    started = await client.expect("input_audio_buffer.speech_started")
    assert started["audio_start_ms"] == 0
    await client.expect("response.done")
    await client.ws.close()


async def test_barge_in_cancels_the_response() -> None:
    # Paced at real time so that the response is still streaming when the caller speaks.
    scenario = Scenario(greeting="This is a long greeting " * 4, speed=1.0, response_latency_ms=0)
    async with Simulator(scenario) as sim:
        client = await open_client(sim.url)
        await client.update(PCMU_SESSION)
        await client.send("response.create")
        await client.expect("response.output_audio.delta")
        await client.append_ulaw(ulaw(voiced(300)))
        events = await client.until("response.done")
        kinds = [e["type"] for e in events]
        assert kinds.index("input_audio_buffer.speech_started") < kinds.index("response.done")
        done = events[-1]["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
        assert done["output"][0]["status"] == "incomplete"
        record = sim.sessions[0].responses[0]
        assert record.status == "cancelled"
        assert 0 < record.audio_ms < 4000  # stopped long before the 6 s of text
        await client.ws.close()
