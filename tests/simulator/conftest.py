from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agi_bridge.simulator import Simulator
from tests.simulator.helpers import OPENED, fast


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(fast()) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while OPENED:
        await OPENED.pop().ws.close()
