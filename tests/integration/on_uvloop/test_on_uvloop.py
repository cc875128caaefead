"""The call path on uvloop (``serve --loop uvloop``), over real sockets.

The same tests as on asyncio's loop, imported and run here on uvloop. uvloop's transports
implement asyncio's interfaces without inheriting from its classes (its TCPTransport is
no ``asyncio.Transport``), so code that checks classes rather than behaviour breaks only
there: an ``isinstance`` assertion in the AudioSocket gate once refused every call.
The loop comes from this folder's conftest.py.
"""

from __future__ import annotations

import asyncio

from ..test_ari_media_ports import (  # noqa: F401 - fixtures and tests, run again on uvloop
    chan_ws,
    rtp,
    test_rtp_caller_audio_in_order,
    test_rtp_frames_out_are_stamped_pcmu,
    test_websocket_closed_by_asterisk_ends_the_call,
    test_websocket_media_both_ways_and_flush,
)
from ..test_call_flow import (  # noqa: F401
    test_agent_hangup_tool_waits_for_goodbye_then_sends_hangup_frame,
    test_barge_in_clears_playout_and_truncates_at_heard_audio,
    test_caller_dtmf_reaches_model_as_text,
    test_caller_speech_reaches_model_and_agent_answers,
    test_garbage_on_one_connection_does_not_disturb_another_call,
    test_greeting_arrives_paced_in_320_byte_frames,
)
from ..test_http_hardening import (  # noqa: F401
    test_idle_connections_are_bounded_and_healthz_answers,
)
from ..test_listener_hardening import (  # noqa: F401
    test_call_over_max_calls_gets_a_hangup_frame_not_a_reset,
    test_idle_audiosocket_sockets_do_not_take_call_slots,
    test_registered_call_still_works_through_fastagi,
)


async def test_these_tests_run_on_uvloop() -> None:
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
