"""One phone call, transport-free: see call.py (the TaskGroup), ports.py (what a transport
implements) and the design notes in docs/ARCHITECTURE.md."""

from agi_bridge.call.call import STATUS_VARIABLE, Call
from agi_bridge.call.caller_input import CALLER_GAP_S
from agi_bridge.call.events import CallNotActive, CallView, EndReason, Observer, State
from agi_bridge.call.session import build_session

__all__ = [
    "CALLER_GAP_S",
    "STATUS_VARIABLE",
    "Call",
    "CallNotActive",
    "CallView",
    "EndReason",
    "Observer",
    "State",
    "build_session",
]
