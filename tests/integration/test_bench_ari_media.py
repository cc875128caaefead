"""The benchmark's ARI media machinery on real loopback sockets, so that it cannot rot.

bench/media_calls.py starts a bridge call directly on an RtpMediaPort or a
WebsocketMediaPort; bench/peers.py plays Asterisk's side (a UDP RTP peer, a chan_websocket
server). Here one call per transport runs through both against the simulator, and
bench_calls.py itself runs a tiny measurement of every transport in a subprocess.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agi_bridge.call import Call
from agi_bridge.call.ports import Outcome
from agi_bridge.simulator import Scenario, Simulator
from tests.integration.conftest import BridgeFactory
from tests.integration.helpers import until

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))  # bench/ is a directory of scripts, not a package

from media_calls import MediaCalls  # noqa: E402
from peers import ChanWebsocketServer, RtpPeer, WebsocketPeer, start_ari_peer  # noqa: E402

ULAW_SILENCE = {0xFF, 0x7F}
LONG_GREETING = "A" + "a" * 120 + "h"  # about 8 s of agent speech: time to talk over it


def intervals_ms(times: list[float]) -> list[float]:
    return [(b - a) * 1000 for a, b in itertools.pairwise(times)]


@pytest.mark.parametrize("transport", ["ari-rtp", "ari-websocket"])
async def test_one_ari_media_call_through_the_bench_machinery(
    transport: str, simulator: Simulator, start_bridge: BridgeFactory, utterance: bytes
) -> None:
    simulator.scenario = Scenario(greeting=LONG_GREETING, default_reply="Okay.")
    bridge, events = await start_bridge()
    media_calls = MediaCalls(bridge)
    ws_server = ChanWebsocketServer() if transport == "ari-websocket" else None
    if ws_server is not None:
        await ws_server.start()

    async def request(**command: Any) -> dict[str, Any]:
        assert command.pop("cmd") == "media_call"
        return await media_calls.start(command)

    peer = await start_ari_peer(transport, request, ws_server, keep_audio=True)
    try:
        await until(lambda: len(peer.heard.times) >= 150, what="150 agent frames", timeout=20)
        (call,) = bridge.calls.values()
        assert isinstance(call, Call)
        assert call.identity.transport == transport
        assert call.stats.frames_in > 0, "the peer's µ-law frames reach the call"
        assert peer.heard.bad_sizes == []
        assert set(peer.heard.pcm) - ULAW_SILENCE, "the greeting is audible at the peer"
        # 20 ms cadence once the call runs (its start shares the loop with the simulator)
        gaps = intervals_ms(peer.heard.times[50:150])
        assert statistics.mean(gaps) == pytest.approx(20.0, abs=2.0)
        assert max(gaps) < 100.0

        peer.say(utterance)  # talk over the greeting: the bridge must stop the agent
        await until(lambda: events.of("barge_in"), what="barge-in", timeout=10)
        if isinstance(peer, WebsocketPeer):
            await until(lambda: peer.commands["FLUSH_MEDIA"] >= 1, what="FLUSH_MEDIA", timeout=5)
            assert peer.max_queue >= 1
            assert peer.overflow == 0

        if isinstance(peer, RtpPeer):
            assert peer.malformed == 0
            assert peer.receiver.stats.lost == 0
            await media_calls.close(grace=5)  # RTP has no hang-up: the runner ends the call
        else:
            await peer.close()  # chan_websocket hangs up by closing the websocket
            await until(lambda: not media_calls.tasks, what="the call to end", timeout=10)
        assert not bridge.calls
        control = next(iter(media_calls.controls.values()))
        assert control.released is Outcome.CALLER_GONE
        assert media_calls.summary() == {
            "live": 0,
            "started": 1,
            "released": {"caller_gone": 1},
        }
    finally:
        await peer.close()
        await media_calls.close(grace=2)
        if ws_server is not None:
            await ws_server.close()


async def test_media_call_rejects_bad_requests(start_bridge: BridgeFactory) -> None:
    bridge, _ = await start_bridge()
    media_calls = MediaCalls(bridge)
    reply = await media_calls.start({"transport": "ari-sip"})
    assert "unknown transport 'ari-sip'" in reply["error"]
    reply = await media_calls.start({"transport": "ari-rtp"})
    assert "bad media_call request" in reply["error"]
    # nothing listens there: chan_websocket connect fails with a clear message
    reply = await media_calls.start({"transport": "ari-websocket", "url": "ws://127.0.0.1:9/m"})
    assert "ari-websocket media port" in reply["error"]
    assert media_calls.summary() == {"live": 0, "started": 0, "released": {}}


def test_bench_calls_runs_every_transport(tmp_path: Path) -> None:
    """A tiny `make bench`: one call per transport, a 2 s window, the JSON checked."""
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        str(BENCH / "bench_calls.py"),
        "--calls",
        "1",
        "--seconds",
        "2",
        "--warmup",
        "0.5",
        "--idle-wait",
        "0",
        "--retries",
        "0",
        "--json",
        str(out),
    ]
    # a token, so that the bridge does not warn about generating one into this test's HOME
    env = {**os.environ, "AGI_BRIDGE_ADMIN_TOKEN": "bench-test-token-0123456789abcdef"}
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=240, check=False, env=env
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("audiosocket", "ari-rtp", "ari-websocket"):
        assert name in proc.stdout  # one column per transport
    data = json.loads(out.read_text())
    assert data["settings"]["transports"] == ["audiosocket", "ari-rtp", "ari-websocket"]
    results = {r["transport"]: r for r in data["results"]}
    assert set(results) == {"audiosocket", "ari-rtp", "ari-websocket"}
    for transport, r in results.items():
        where = f"{transport}: {json.dumps(r)[:2000]}"
        assert r["calls"] == 1 and r["measured_calls"] == 1, where
        assert r["calls_alive_at_end"] == 1 and r["callers_disconnected"] == 0, where
        assert r["pacing_bridge_ms"]["n"] > 50, where  # the pacer's 20 ms ticks in the window
        assert r["pacing_callers_ms"]["n"] > 10, where  # the greeting plays in the window
        assert r["frames_heard_by_peers"] > 10, where
        assert r["bad_frame_sizes"] == 0, where
        assert r["bridge_cpu_per_call_pct"] > 0, where
        assert r["bridge_log_problems"]["total"] == 0, where


def test_peer_pauses_split_runs() -> None:
    from peers import split_at_pauses

    assert split_at_pauses([]) == []
    assert split_at_pauses([0.0, 0.02, 0.04, 3.0, 3.02]) == [[0.0, 0.02, 0.04], [3.0, 3.02]]
