"""A local OpenAI Realtime (GA) endpoint: the test double and the offline demo's model.

It speaks the subset a telephony bridge uses, with the service's handshake rules, session
schema checks, energy VAD on the audio timeline, barge-in, truncate, function calls and
usage, and streams a synthetic speech-like voice faster than real time::

    async with Simulator(Scenario(greeting="Hello!")) as sim:
        ...connect a client to sim.url with "Authorization: Bearer anything"...
        session = await sim.wait_for(lambda: sim.sessions and sim.sessions[0])

Modules: ``server`` (handshake, sessions), ``session`` (client events, records) with its
mixins ``input_events`` (appends, VAD, commits, transcripts, idle timeout via ``idle``)
and ``item_events`` (conversation items, truncate), ``responses`` (streaming a response),
``schema`` (session.update validation), ``vad``, ``synth`` (the voice), ``codec``
(pcmu/pcma/pcm), ``usage``, ``scenario``. ``live/`` is the GPT-Live endpoint, built from
the same pieces.
"""

from agi_bridge.simulator.responses import ResponseRecord
from agi_bridge.simulator.scenario import Scenario, ToolCall, Turn, demo_scenario
from agi_bridge.simulator.server import Simulator, run_simulator
from agi_bridge.simulator.session import SimSession
from agi_bridge.simulator.synth import plan_ms, transcript_of

__all__ = [
    "ResponseRecord",
    "Scenario",
    "SimSession",
    "Simulator",
    "ToolCall",
    "Turn",
    "demo_scenario",
    "plan_ms",
    "run_simulator",
    "transcript_of",
]
