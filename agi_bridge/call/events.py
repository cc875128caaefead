"""What observers (records, metrics, monitoring, admin) see of a call: the kinds of call
events, and a read-only view. Observers import this module, never call.py."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Literal, Protocol

from agi_bridge.call.ports import CallIdentity
from agi_bridge.call.stats import AudioRecorder, CallStats
from agi_bridge.config import Config
from agi_bridge.errors import BridgeError


class State(enum.Enum):
    CONNECTING = "connecting"  # media up, provider session being opened
    ACTIVE = "active"  # conversation running
    ENDING = "ending"  # tearing down
    ENDED = "ended"


class EndReason(enum.Enum):
    CALLER_HANGUP = "caller_hangup"
    AGENT_HANGUP = "agent_hangup"
    REALTIME_FAILED = "realtime_failed"
    PROTOCOL_ERROR = "protocol_error"
    MAX_DURATION = "max_duration"
    SHUTDOWN = "shutdown"
    INTERNAL_ERROR = "internal_error"
    TRANSFERRED = "transferred"  # the channel continues elsewhere in the dialplan
    OPERATOR_HANGUP = "operator_hangup"  # the admin interface ended the call


# Every event a call emits, with its data keys:
EventKind = Literal[
    "start",  # agent, channel, caller, dnid, transport
    "end",  # reason, detail
    "speech_started",  # item_id
    "speech_stopped",  # item_id
    "caller_transcript",  # item_id, text
    "agent_transcript",  # item_id, text
    "caller_dtmf",  # digit
    "caller_idle",  # (none)
    "dtmf_sent",  # digit
    "barge_in",  # item_id, audio_end_ms, dropped_ms
    "operator_interrupt",  # item_id, audio_end_ms, dropped_ms
    "turn_latency",  # item_id, ms
    "response_done",  # response_id, status, usage
    "transcription_usage",  # item_id, usage
    "tool_call",  # name, arguments, call_id
    "tool_result",  # name, result, call_id
    "agent_switch",  # agent, previous
    "transfer",  # destination, summary, context, exten, priority
    "reconnect",  # reason, attempt
    "realtime_error",  # code, message
    "operator_message",  # role, text
    "instructions_replaced",  # chars
]


class CallView(Protocol):
    """Read-only view of a live call for observers."""

    @property
    def call_id(self) -> str: ...

    @property
    def identity(self) -> CallIdentity: ...

    @property
    def agent_name(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def state(self) -> State: ...

    @property
    def duration_s(self) -> float: ...

    @property
    def stats(self) -> CallStats: ...

    def attach_recorder(self, recorder: AudioRecorder | None) -> None:
        """Tap the call's audio (an observer does this on "start")."""

    def info(self) -> dict[str, Any]:
        """What the admin interface lists about a call."""


Observer = Callable[[CallView, str, dict[str, Any]], None]


class CallNotActive(BridgeError):
    """An operator action on a call that is not in conversation (connecting or ending)."""


class LiveCall(CallView, Protocol):
    """A live call as the operator interface (admin.py) drives it."""

    @property
    def started_at(self) -> float: ...

    async def say(self, text: str, role: Literal["user", "system"] = "user") -> None: ...

    async def interrupt(self) -> dict[str, Any]: ...

    async def set_instructions(self, instructions: str) -> None: ...

    def hangup(self, reason: str = "operator") -> None: ...


class CallRegistry(Protocol):
    """The live calls of a bridge, by what the operator interface needs."""

    @property
    def config(self) -> Config: ...

    def live_calls(self) -> list[LiveCall]: ...

    def find_call(self, call_id: str) -> LiveCall | None: ...
