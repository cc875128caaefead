"""A local GPT-Live endpoint (``/v1/live/sessions``): the test double for the GPT-Live
event contract, sharing the Realtime simulator's scenario, VAD, voice and codecs.

    async with LiveSimulator(Scenario(greeting="Hello!")) as sim:
        ...connect to sim.url with "Authorization: Bearer anything", send session.start...

Modules: ``server`` (handshake), ``session`` (events, turns, tools, usage), ``schema``
(strict client events and session object).
"""

from agi_bridge.simulator.live.server import LiveSimulator
from agi_bridge.simulator.live.session import LiveSession

__all__ = ["LiveSession", "LiveSimulator"]
