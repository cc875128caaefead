"""``agi-bridge demo``: one whole call offline (bridge + Realtime + a virtual caller)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agi_bridge.config import Config
from agi_bridge.errors import ConfigError

if TYPE_CHECKING:
    from agi_bridge.call.events import CallView

GREETING_TIMEOUT_S = 30.0  # the agent's greeting must have started and ended by then
ANSWER_TIMEOUT_S = 30.0
END_EVENT_WAIT_S = 3.0  # after the bridge hung up, for the call's "end" event


class DemoFailed(Exception):
    """The call did not get as far as the demo needs (the message says where and why)."""


def check_wav_path(wav_out: str) -> None:
    """Before the call: ``--wav`` must be writable (a call takes ~20 s to find out)."""
    path = Path(wav_out)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"--wav {wav_out}: is a directory; give a file name")
    if not parent.is_dir():
        raise ConfigError(f"--wav {wav_out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"--wav {wav_out}: directory {parent} is not writable")


def _speech(say: str) -> bytes:
    from agi_bridge.virtual_caller import espeak

    if shutil.which("espeak-ng"):
        return espeak(say)
    from agi_bridge.simulator.synth import render_word

    return b"".join(render_word(w, 320, 8000, i).tobytes() for i, w in enumerate(say.split()))


async def run_demo(cfg: Config, say: str, wav_out: str) -> int:
    from agi_bridge.app import Bridge
    from agi_bridge.virtual_caller import VirtualCaller

    check_wav_path(wav_out)
    cfg = dataclasses.replace(
        cfg,
        listen=dataclasses.replace(
            cfg.listen,
            audiosocket="127.0.0.1:0",
            fastagi="127.0.0.1:0",
            http="",
            audiosocket_unregistered="default_agent",  # the virtual caller has no FastAGI
        ),
        ami=dataclasses.replace(cfg.ami, enabled=False),
        # the demo is offline by design: it asks for the simulator when no key is set
        realtime=dataclasses.replace(cfg.realtime, simulator_without_key=True),
    )
    ended: dict[str, Any] = {}
    end_seen = asyncio.Event()

    def show(call: CallView, kind: str, data: dict[str, Any]) -> None:
        t = f"{call.duration_s:5.1f}s"
        if kind == "agent_transcript":
            print(f"{t}  agent : {data['text']}", flush=True)
        elif kind == "caller_transcript":
            print(f"{t}  caller: {data['text']}", flush=True)
        elif kind == "barge_in":
            print(
                f"{t}  (caller talked over the agent: playout cleared, item truncated at "
                f"{data['audio_end_ms']} ms heard)",
                flush=True,
            )
        elif kind == "turn_latency":
            print(f"{t}  (first agent audio {data['ms']:.0f} ms after the caller stopped)")
        elif kind == "end":
            print(f"{t}  call ended: {data['reason']} {data['detail']}", flush=True)
            ended.update(data)
            end_seen.set()

    async def why_ended(stage: str) -> DemoFailed:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(end_seen.wait(), END_EVENT_WAIT_S)
        what = f"{ended.get('reason', 'hung up')} {ended.get('detail', '')}".strip()
        return DemoFailed(f"the call ended {stage}: {what}")

    async with Bridge(cfg, observers=(show,)) as bridge:
        if bridge.simulator is not None:
            print(f"Realtime: bundled SIMULATOR at {bridge.simulator.url} (no OPENAI_API_KEY)")
        speech = _speech(say)
        async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
            print(f"virtual caller connected (call {caller.uuid})")
            greeted = await caller.wait_quiet(after_audio=True, timeout=GREETING_TIMEOUT_S)
            if caller.closed.is_set():
                raise await why_ended("before the caller spoke")
            if not greeted:
                raise DemoFailed(
                    f"no greeting from the Realtime session within {GREETING_TIMEOUT_S:.0f} s "
                    f"(realtime.provider {cfg.realtime.provider})"
                )
            print(f"       caller says: {say!r} ({len(speech) / 16000:.1f} s of audio)")
            caller.say(speech)
            await caller.wait_spoken()
            if caller.closed.is_set():
                raise await why_ended("while the caller spoke")
            await caller.wait_quiet(after_audio=True, timeout=ANSWER_TIMEOUT_S)
            caller.hangup()
            await asyncio.sleep(0.3)
        heard = bytes(caller.heard.pcm)
    with wave.open(wav_out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(heard)
    print(f"what the caller heard: {wav_out} ({len(heard) / 16000:.1f} s)")
    summary = bridge.monitoring.records.last_summary
    if summary and summary.get("record_dir"):
        print(f"call record: {summary['record_dir']} (agi-bridge show {summary['call_id']})")
    return 0
