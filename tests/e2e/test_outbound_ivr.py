"""`agi-bridge call` end to end: a real Asterisk 22, its demo phone menu, AMI Originate.

`agi-bridge call` runs as a real subprocess (its own bridge on ephemeral ports, its own
AMI connection) with a config whose Realtime URL points at a Simulator running in this
test process. The demo IVR (asterisk-config/extensions_agi_bridge_ivr_demo.conf) reports
every node it reaches as an AMI UserEvent, which the test reads with its own AMI client:
that is how the test proves, from Asterisk's side, which path the agent took.

The simulator does not understand speech. Its scripted turns are consumed one per
response, and responses come from its energy VAD hearing the IVR's prompts end (one
response per prompt: the agent's silence_duration_ms is longer than any pause inside a
prompt) and from the bridge asking for a response after each send_dtmf result. So the
script alternates "act on this prompt" and "say nothing" turns.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agi_bridge.simulator import Scenario, Simulator, ToolCall, Turn
from tests.e2e import harness
from tests.e2e.harness import AmiClient, Asterisk

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
IVR = "Local/500@agi-bridge-ivr-demo"
GOAL = "Go to messages, choose number entry and enter the number 12345."


def dtmf(digits: str) -> Turn:
    return Turn("", tool_calls=(ToolCall("send_dtmf", {"digits": digits}),))


SILENT = Turn("")  # the response the bridge asks for after a tool result: say nothing


@dataclass
class CallRun:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def result(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stdout)
        return data


class Outbound:
    """Asterisk + an in-process Simulator + an AMI observer; runs `agi-bridge call`."""

    def __init__(self, asterisk: Asterisk, sim: Simulator, ami: AmiClient, tmp: Path) -> None:
        self.asterisk = asterisk
        self.sim = sim
        self.ami = ami
        self.tmp = tmp
        secret = tmp / "ami-secret"
        secret.write_text(harness.AMI_TEST_SECRET + "\n")
        ari_password = tmp / "ari-password"
        ari_password.write_text(harness.ARI_TEST_PASSWORD + "\n")
        self.config = tmp / "call.yaml"
        self.config.write_text(
            f"""
listen: {{audiosocket: "127.0.0.1:0", fastagi: "127.0.0.1:0", http: ""}}
ami: {{host: 127.0.0.1, port: {harness.AMI_PORT}, username: agi_bridge,
      secret_file: "{secret}"}}
realtime: {{provider: url, url: "ws://127.0.0.1:{sim.port}/v1/realtime", connect_timeout_s: 5}}
ari: {{url: "{harness.ARI_URL}", username: {harness.ARI_USER}, password_file: "{ari_password}"}}
records: {{enabled: false}}
default_agent: ivr
agents:
  ivr:
    instructions: You call automated phone menus to reach a goal. Be brief.
    greeting: ""
    turn_detection: {{type: server_vad, silence_duration_ms: 800}}
"""
        )

    async def call(
        self,
        destination: str | None,
        *args: str,
        timeout: float = 90.0,
        signal_when: tuple[str, int] | None = None,
    ) -> CallRun:
        """Run `agi-bridge call DESTINATION -c CONFIG --agent ivr ARGS...` (None: no
        destination, for --csv). ``signal_when=(NODE, SIG)``: send SIG to the process
        once the demo IVR reports NODE."""
        env = {**os.environ, "OPENAI_API_KEY": "sk-e2e"}
        earlier = {id(e) for e in self.ami.events}
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agi_bridge",
            "call",
            *([destination] if destination is not None else []),
            "-c",
            str(self.config),
            "--agent",
            "ivr",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.tmp,
            env=env,
        )
        if signal_when is not None:
            node, sig = signal_when
            await self.ami.wait_event(
                lambda e: (
                    e.get("UserEvent") == "AgiBridgeIvr"
                    and e.get("Node") == node
                    and id(e) not in earlier
                ),
                timeout=30,
            )
            proc.send_signal(sig)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            pytest.fail(f"agi-bridge call did not finish within {timeout} s:\n{err.decode()}")
        assert proc.returncode is not None
        return CallRun(proc.returncode, out.decode(), err.decode(), time.monotonic() - started)

    def user_events(self) -> list[dict[str, str]]:
        return [
            e
            for e in self.ami.events
            if e.get("Event") == "UserEvent" and e.get("UserEvent") == "AgiBridgeIvr"
        ]

    def nodes(self) -> list[str]:
        return [e["Node"] for e in self.user_events()]


StartOutbound = Callable[[Scenario], Awaitable[Outbound]]


@pytest.fixture
async def outbound(
    asterisk_factory: Callable[..., Asterisk], tmp_path: Path
) -> AsyncIterator[StartOutbound]:
    sims: list[Simulator] = []
    clients: list[AmiClient] = []

    async def start(scenario: Scenario) -> Outbound:
        asterisk = asterisk_factory()
        await asyncio.to_thread(asterisk.start)
        sim = Simulator(scenario)
        await sim.start()
        sims.append(sim)
        ami = await AmiClient.connect()
        clients.append(ami)
        return Outbound(asterisk, sim, ami, tmp_path)

    yield start
    for ami in clients:
        await ami.close()
    for sim in sims:
        await sim.close()


@pytest.mark.parametrize("transport", ["audiosocket", "ari"])
async def test_agent_navigates_the_demo_ivr_and_reports_the_goal(
    outbound: StartOutbound, tmp_path: Path, transport: str
) -> None:
    scenario = Scenario(
        turns=[
            dtmf("2"),  # main menu: "... press 2 for messages ..."
            SILENT,
            dtmf("1"),  # sub-menu: "press 1 for number ..."
            SILENT,
            dtmf("12345#"),  # "please enter the number ... followed by the pound key"
            SILENT,
            Turn(  # "you entered 1 2 3 4 5, thank you ..."
                "Thank you, goodbye.",
                tool_calls=(ToolCall("hangup", {"reason": "goal achieved: number 12345 entered"}),),
            ),
        ],
        default_reply="",
    )
    o = await outbound(scenario)
    record = tmp_path / "records"
    run = await o.call(
        IVR, "--goal", GOAL, "--json", "--record", str(record), "--transport", transport
    )
    assert run.code == 0, run.stderr
    result = run.result

    # 1. the result: goal achieved, the digits with their times, transcript, usage
    assert result["outcome"] == "goal_achieved"
    assert result["exit_code"] == 0
    assert result["detail"] == "goal achieved: number 12345 entered"
    assert result["digits_sent"] == "2112345#"
    times = [d["t"] for d in result["digits"]]
    assert times == sorted(times) and times[0] > 5.0  # pressed after the menu was heard
    assert result["answered"] is True
    assert result["channel"].startswith("Local/500@agi-bridge-ivr-demo-")
    assert result["channel"].endswith(";1")
    assert result["end_reason"] == "agent_hangup"
    agent_lines = [e["text"] for e in result["transcript"] if e["who"] == "agent" and "text" in e]
    assert agent_lines == ["Thank you, goodbye."]
    assert sum(1 for e in result["transcript"] if e["who"] == "callee") >= 4  # one per prompt
    assert result["usage"]["input_tokens"] > 0 and result["tokens"]["audio_out"] > 0
    assert [t["name"] for t in result["tool_calls"]] == ["send_dtmf"] * 3 + ["hangup"]
    # the live transcript went to stderr, readable and without log records
    assert "agent presses 12345#" in run.stderr
    assert "agent hangs up: goal achieved" in run.stderr
    assert " INFO " not in run.stderr and "Traceback" not in run.stderr

    # 2. Asterisk's side: exactly this path through the menu, nothing else
    assert o.nodes() == ["main", "submenu", "number-entry", "number-entered", "done"]
    entered = [e for e in o.user_events() if e["Node"] == "number-entered"]
    assert entered[0]["Digits"] == "12345"
    # PlayDTMF on the agent's half (;1) of the Local channel reached the IVR's half (;2)
    received = [
        e["Digit"]
        for e in o.ami.events
        if e.get("Event") == "DTMFEnd"
        and e.get("Direction") == "Received"
        and e.get("Channel", "").endswith(";2")
    ]
    assert "".join(received) == "2112345#"
    await asyncio.to_thread(o.asterisk.wait_for_no_channels, 5)

    # 3. the model was asked once per tool call (one output each, hangup ends the call)
    session = o.sim.sessions[0]
    outputs = [json.loads(f["output"]) for f in session.function_outputs]
    assert [x.get("digits_sent") for x in outputs] == ["2", "1", "12345#"]
    assert "goal achieved" in session.session["instructions"]
    assert GOAL in session.session["instructions"]

    # 4. --record: the call record with the stereo recording and the result next to it
    summaries = list(record.rglob("summary.json"))
    assert len(summaries) == 1
    call_dir = summaries[0].parent
    assert (call_dir / "call.wav").stat().st_size > 44
    assert json.loads((call_dir / "result.json").read_text())["outcome"] == "goal_achieved"
    assert result["record_dir"] == str(call_dir)


async def test_unanswered_busy_congested_and_invalid_destinations(
    outbound: StartOutbound,
) -> None:
    o = await outbound(Scenario())
    cases = {
        "486": ("busy", 5),  # Busy(): OriginateResponse Reason 5
        "503": ("congestion", 6),  # Congestion(): Reason 8
        "480": ("no_answer", 4),  # Ringing() forever: Reason 3 after the ring timeout
        "PJSIP/6002": ("failed", 7),  # a phone that is not registered: Reason 0
        "Local/999@agi-bridge-ivr-demo": ("failed", 7),  # no such extension: Reason 0
        "Local/601@agi-bridge-phones": ("remote_hangup", 3),  # answers, says hello, hangs up
    }
    runs = await asyncio.gather(
        *(
            o.call(dest, "--goal", "Reach someone.", "--json", "--ring-timeout", "3")
            for dest in cases
        )
    )
    for (dest, (outcome, code)), run in zip(cases.items(), runs, strict=True):
        assert (run.code, run.result["outcome"]) == (code, outcome), (dest, run.stderr)
        assert run.seconds < 20, (dest, run.seconds)
        assert "WARNING" not in run.stderr and "Traceback" not in run.stderr, run.stderr
    by_dest = dict(zip(cases, (r.result for r in runs), strict=True))
    assert by_dest["486"]["originate_reason"] == 5
    assert by_dest["486"]["hangup_cause"] == 17  # User busy
    assert by_dest["503"]["originate_reason"] == 8
    assert by_dest["480"]["originate_reason"] == 3
    assert by_dest["480"]["hangup_cause"] == 19  # no answer
    assert by_dest["PJSIP/6002"]["originate_reason"] == 0
    assert by_dest["Local/601@agi-bridge-phones"]["answered"] is True
    assert all(not r.result["digits"] for r in runs)
    await asyncio.to_thread(o.asterisk.wait_for_no_channels, 5)


async def test_csv_calls_every_row_with_a_concurrency_limit(
    outbound: StartOutbound, tmp_path: Path
) -> None:
    o = await outbound(Scenario())
    rows = tmp_path / "calls.csv"
    rows.write_text(
        "destination,goal\n"
        "486,Reach sales.\n"
        "503,\n"  # empty goal cell: --goal
        "Local/601@agi-bridge-phones,Say hello.\n"
    )
    run = await o.call(
        None, "--csv", str(rows), "--concurrency", "2", "--goal", "Reach someone.", "--json"
    )
    assert run.code == 1, run.stderr  # not every call achieved its goal
    results = json.loads(run.stdout)
    assert [(r["destination"], r["outcome"], r["exit_code"]) for r in results] == [
        ("486", "busy", 5),
        ("503", "congestion", 6),
        ("Local/601@agi-bridge-phones", "remote_hangup", 3),
    ]
    assert [r["goal"] for r in results] == ["Reach sales.", "Reach someone.", "Say hello."]
    # every line of the live output says which row it belongs to
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith(("[1] ", "[2] ", "[3] ")) for line in lines)
    await asyncio.to_thread(o.asterisk.wait_for_no_channels, 5)


async def test_overall_timeout_hangs_up_a_ringing_call(outbound: StartOutbound) -> None:
    o = await outbound(Scenario())
    run = await o.call("480", "--goal", "Reach someone.", "--timeout", "3", "--ring-timeout", "60")
    assert run.code == 8, run.stdout + run.stderr
    assert "Result: timeout (exit code 8)" in run.stdout  # the human summary
    assert run.seconds < 15
    # the ringing channel was hung up by its uniqueid, not left behind
    await asyncio.to_thread(o.asterisk.wait_for_no_channels, 5)


async def test_timeout_and_ctrl_c_hang_up_a_call_in_progress(outbound: StartOutbound) -> None:
    """The agent says nothing (no scripted turns); the menu plays; we end the call."""
    o = await outbound(Scenario(default_reply=""))
    run = await o.call(IVR, "--goal", "Listen.", "--json", "--timeout", "6")
    assert run.code == 8, run.stderr
    result = run.result
    assert (result["outcome"], result["answered"]) == ("timeout", True)
    assert result["end_reason"] == "operator_hangup"  # the agent's call was ended by us
    assert 6.0 <= run.seconds < 15
    await asyncio.to_thread(o.asterisk.wait_for_no_channels, 5)
    # completed: the dialplan hung up without falling back to "all circuits are busy"
    assert "fallback for" not in o.asterisk.log_text()

    run = await o.call(IVR, "--goal", "Listen.", "--json", signal_when=("main", signal.SIGINT))
    assert run.code == 130, run.stderr
    assert run.result["outcome"] == "interrupted"
    assert run.seconds < 15
    await asyncio.to_thread(o.asterisk.wait_for_no_channels, 5)


async def test_demo_ivr_reports_invalid_and_hold_nodes(outbound: StartOutbound) -> None:
    """The menu's other paths, driven by the test itself over AMI (PlayDTMF on ;1)."""
    o = await outbound(Scenario())
    ami = o.ami
    await ami.action(
        "Originate",
        Channel=IVR,
        Application="Wait",
        Data="60",
        Async="true",
        ChannelId="ivr-paths",
    )

    seen: list[dict[str, str]] = []

    async def node(name: str) -> dict[str, str]:
        # AMI events carry no timestamps here: two "main" events are equal dicts, so
        # match by identity against the ones already taken
        return await ami.wait_event(
            lambda e: (
                e.get("UserEvent") == "AgiBridgeIvr"
                and e.get("Node") == name
                and not any(e is s for s in seen)
            ),
            timeout=20,
        )

    seen.append(await node("main"))
    channel = "ivr-paths"  # AMI takes the uniqueid for Channel
    await ami.action("PlayDTMF", Channel=channel, Digit="9", Duration="100")
    seen.append(await node("invalid"))
    seen.append(await node("main"))  # "that option is invalid", then the menu again
    await ami.action("PlayDTMF", Channel=channel, Digit="3", Duration="100")
    seen.append(await node("hold"))
    assert [e["Node"] for e in seen] == ["main", "invalid", "main", "hold"]
    assert o.nodes() == ["main", "invalid", "main", "hold"]
    await ami.action("Hangup", Channel=channel)
    await asyncio.to_thread(o.asterisk.wait_for_no_channels, 5)
