"""The Realtime provider's mapping of the events this branch added (JSON literals in)."""

from __future__ import annotations

from agi_bridge.protocol import realtime as rt
from agi_bridge.providers import base as p
from agi_bridge.providers.realtime import neutral_event


def test_timeout_triggered_is_a_silence_the_service_answers() -> None:
    ev = rt.parse_server_event(
        b'{"type":"input_audio_buffer.timeout_triggered","event_id":"e","audio_start_ms":0,'
        b'"audio_end_ms":6000,"item_id":"i"}'
    )
    assert neutral_event(ev) == p.CallerIdle(answered=True)


def test_transcription_usage_travels_with_the_transcript() -> None:
    ev = rt.parse_server_event(
        b'{"type":"conversation.item.input_audio_transcription.completed","event_id":"e",'
        b'"item_id":"i","content_index":0,"transcript":"hi",'
        b'"usage":{"type":"duration","seconds":1.5}}'
    )
    assert neutral_event(ev) == p.CallerTranscript(
        "i",
        "hi",
        {
            "kind": "duration",
            "seconds": 1.5,
            "audio_tokens": 0,
            "text_tokens": 0,
            "output_tokens": 0,
        },
    )
    bare = rt.parse_server_event(
        b'{"type":"conversation.item.input_audio_transcription.completed","item_id":"i",'
        b'"transcript":"hi"}'
    )
    assert neutral_event(bare) == p.CallerTranscript("i", "hi", {})
