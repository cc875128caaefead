"""Answering-machine detection on real audio: Asterisk's AMD() in the shipped dialplan
([agi-bridge-amd]) listens to the answered leg of `agi-bridge call --amd POLICY`.

The destinations are in the demo dialplan and play Asterisk's own prompts: 210 is a
machine (a long continuous greeting, a beep, then it records), 211 a person ("Hello."
then silence). AMD decides on the audio alone; the test reads its verdict from the
result and from Asterisk's log, and the path each policy took from the demo's UserEvents.
"""

from __future__ import annotations

import asyncio

import pytest

from agi_bridge.simulator import Scenario
from tests.e2e.test_outbound_ivr import StartOutbound, outbound  # noqa: F401

pytestmark = pytest.mark.e2e

MACHINE = "Local/210@agi-bridge-ivr-demo"
PERSON = "Local/211@agi-bridge-ivr-demo"


async def test_amd_machine_and_person_with_each_policy(
    outbound: StartOutbound,  # noqa: F811
) -> None:
    o = await outbound(Scenario(default_reply=""))

    # 1. a machine, policy hangup: hung up right after the verdict, the agent never joins
    run = await o.call(MACHINE, "--goal", "Reach someone.", "--json", "--amd", "hangup")
    assert run.code == 9, run.stderr
    r = run.result
    assert (r["outcome"], r["amd"]["status"], r["amd"]["policy"]) == (
        "machine",
        "MACHINE",
        "hangup",
    )
    assert r["amd"]["cause"].startswith(("LONGGREETING", "MAXWORDS")), r["amd"]
    assert r["end_reason"] == "" and not o.sim.sessions  # no agent, no Realtime session
    assert "machine-beep" not in o.nodes()
    assert "AMD MACHINE" in o.asterisk.log_text()
    await asyncio.to_thread(o.asterisk.wait_for_no_channels, 5)

    # 2. a person, same policy: AMD says HUMAN and the agent takes the call
    run = await o.call(
        PERSON, "--goal", "Reach someone.", "--json", "--amd", "hangup", "--timeout", "10"
    )
    assert run.code == 8, run.stderr  # nobody says more: our --timeout ends it
    r = run.result
    assert r["amd"]["status"] == "HUMAN", r["amd"]
    assert r["amd"]["cause"].startswith("HUMAN")
    assert r["end_reason"] == "operator_hangup"  # the agent was on the line
    assert len(o.sim.sessions) == 1
    await asyncio.to_thread(o.asterisk.wait_for_no_channels, 5)

    # 3. a machine, policy message: after the beep the agent leaves the message
    o.sim.scenario = Scenario(greeting="Hello, this is agi-bridge about order A17. Goodbye.")
    run = await o.call(
        MACHINE,
        "--goal",
        "Tell them about their order.",
        "--json",
        "--amd",
        "message",
        "--voicemail-message",
        "Your order {order} has shipped.",
        "--var",
        "order=A17",
    )
    assert run.code == 12, run.stderr
    r = run.result
    assert (r["outcome"], r["amd"]["status"]) == ("voicemail_left", "MACHINE")
    said = [e for e in r["transcript"] if e["who"] == "agent" and e.get("text")]
    assert said and "order A17" in said[0]["text"]
    # it spoke after the beep, while the machine recorded (the machine hung up after)
    assert o.nodes()[-2:] == ["machine-beep", "machine-recorded"]
    session = o.sim.sessions[-1]
    assert "Your order A17 has shipped." in session.session["instructions"]
    assert "answering machine" in session.session["instructions"]
    assert [t["name"] for t in session.session["tools"]] == ["hangup"]
    await asyncio.to_thread(o.asterisk.wait_for_no_channels, 5)
