"""Calls announced over FastAGI, waiting for their AudioSocket connection: the registry
(PendingCalls) and what it holds (CallMetadata)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from agi_bridge.asterisk.admission import Throttle
from agi_bridge.protocol import agi as proto

__all__ = [
    "SECRET_PARAMETER",
    "CallMetadata",
    "CallOutcomes",
    "PendingCalls",
    "canonical_uuid",
    "requested_agent",
]

log = logging.getLogger("agi_bridge.asterisk.agi")

# agi://HOST:PORT/agent?secret=VALUE: the shared secret, when one is configured
SECRET_PARAMETER = "secret"


@dataclass(frozen=True)
class CallMetadata:
    """What the FastAGI request told us about a call, keyed by the UUID we gave it."""

    call_id: str  # canonical lowercase 8-4-4-4-12 UUID, as sent to AudioSocket
    channel: str  # e.g. PJSIP/alice-00000001: the name AMI actions need
    uniqueid: str
    caller_id: str  # "" when Asterisk reports "unknown"
    caller_name: str
    dnid: str
    extension: str
    context: str
    agent: str | None
    args: tuple[str, ...]
    query: dict[str, str] = field(hash=False)
    language: str
    registered_at: float  # monotonic clock of the PendingCalls registry

    @classmethod
    def from_request(
        cls,
        request: proto.AgiRequest,
        *,
        call_id: str,
        agent: str | None,
        registered_at: float,
    ) -> CallMetadata:
        return cls(
            call_id=call_id,
            channel=request.channel,
            uniqueid=request.uniqueid,
            caller_id=request.callerid,
            caller_name=request.calleridname,
            dnid=request.dnid,
            extension=request.extension,
            context=request.context,
            agent=agent,
            args=tuple(request.args),
            query={k: v for k, v in request.query.items() if k != SECRET_PARAMETER},
            language=request.language,
            registered_at=registered_at,
        )


def requested_agent(request: proto.AgiRequest) -> str | None:
    """The agent the dialplan asked for: ``AGI(.../agent,NAME)`` or ``.../agent?name=NAME``."""
    args = request.args
    if args and args[0]:
        return args[0]
    return request.query.get("name") or None


def canonical_uuid(value: str) -> str | None:
    """``value`` as lowercase 8-4-4-4-12, or None if it is not a UUID."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


class PendingCalls:
    """Calls announced over FastAGI, waiting for their AudioSocket connection.

    A registration is claimed once (``claim`` removes it). Registrations never claimed
    (the caller hung up between AGI and AudioSocket, or the dialplan fell back) expire
    after ``ttl`` seconds. Expiry runs on ``register``/``claim`` against an injected clock,
    so there is no background task and tests can move time by hand.

    The registry never refuses and never grows past ``max_pending``: a new registration
    evicts the oldest one of its own source when that source holds ``max_per_source``,
    else the oldest of all when the registry is full. Asterisk claims a registration
    within milliseconds, so only a flood loses its own oldest entries, and a flood from
    one peer cannot push out the registrations of another.
    """

    def __init__(
        self,
        *,
        ttl: float = 30.0,
        max_pending: int = 1000,
        max_per_source: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or max_pending <= 0 or max_per_source <= 0:
            raise ValueError("ttl, max_pending and max_per_source must be positive")
        self.ttl = ttl
        self.max_pending = max_pending
        self.max_per_source = max_per_source
        self.clock = clock
        # Insertion order is expiry order (same ttl, monotonic clock): purge pops the front.
        self._calls: dict[str, tuple[float, CallMetadata, str]] = {}
        self._per_source: dict[str, int] = {}
        self.evicted = 0  # registrations pushed out by newer ones
        self._throttle = Throttle(log)

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, call_id: object) -> bool:
        return isinstance(call_id, str) and canonical_uuid(call_id) in self._calls

    def register(self, meta: CallMetadata, *, source: str = "") -> bool:
        """Add *meta* (from peer address *source*); evicts the oldest entry if need be."""
        self.purge()
        call_id = canonical_uuid(meta.call_id)
        if call_id != meta.call_id:
            raise ValueError(f"call_id must be a lowercase canonical UUID: {meta.call_id!r}")
        if call_id in self._calls:
            raise ValueError(f"call_id already registered: {call_id}")
        if self._per_source.get(source, 0) >= self.max_per_source:
            self._evict(source, f"{self.max_per_source} pending from {source or '?'}")
        if len(self._calls) >= self.max_pending:
            self._evict(None, f"{self.max_pending} pending in all")
        self._calls[call_id] = (self.clock() + self.ttl, meta, source)
        self._per_source[source] = self._per_source.get(source, 0) + 1
        return True

    def claim(self, call_id: str) -> CallMetadata | None:
        """Remove and return the metadata for *call_id* (any UUID spelling), or None."""
        self.purge()
        key = canonical_uuid(call_id)
        if key is None or key not in self._calls:
            return None
        return self._remove(key)

    def purge(self) -> int:
        """Drop expired registrations; returns how many."""
        now = self.clock()
        expired = 0
        while self._calls:
            call_id, (deadline, meta, _) = next(iter(self._calls.items()))
            if deadline > now:
                break
            self._remove(call_id)
            expired += 1
            log.info(
                "pending call expired unclaimed after %.0fs: call_id=%s channel=%s",
                self.ttl,
                call_id,
                meta.channel,
            )
        return expired

    def _evict(self, source: str | None, why: str) -> None:
        victim = next(
            (k for k, (_, _, src) in self._calls.items() if source is None or src == source),
            None,
        )
        if victim is None:
            return
        meta = self._remove(victim)
        self.evicted += 1
        self._throttle(
            f"evict {source}",
            logging.WARNING,
            "pending calls: %s, dropped the oldest (call_id=%s channel=%s)",
            why,
            victim,
            meta.channel,
        )

    def _remove(self, call_id: str) -> CallMetadata:
        _, meta, source = self._calls.pop(call_id)
        left = self._per_source.get(source, 0) - 1
        if left > 0:
            self._per_source[source] = left
        else:
            self._per_source.pop(source, None)
        return meta


class CallOutcomes:
    """How recent calls ended (``completed``, ``failed`` ...), by call id, so that the
    dialplan can ask over FastAGI (``AGI(agi://HOST/status,UUID)``) when AMI could not
    set AGI_BRIDGE_STATUS. Bounded in count and age; an entry is read at most once."""

    def __init__(
        self,
        *,
        ttl: float = 300.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._outcomes: dict[str, tuple[float, str]] = {}  # insertion order = age

    def __len__(self) -> int:
        return len(self._outcomes)

    def record(self, call_id: str, outcome: str) -> None:
        key = canonical_uuid(call_id)
        if key is None:
            return
        self._purge()
        self._outcomes.pop(key, None)
        while len(self._outcomes) >= self.max_entries:
            del self._outcomes[next(iter(self._outcomes))]
        self._outcomes[key] = (self.clock() + self.ttl, outcome)

    def take(self, call_id: str) -> str | None:
        self._purge()
        key = canonical_uuid(call_id)
        entry = self._outcomes.pop(key, None) if key is not None else None
        return None if entry is None else entry[1]

    def _purge(self) -> None:
        now = self.clock()
        while self._outcomes:
            key, (deadline, _) = next(iter(self._outcomes.items()))
            if deadline > now:
                break
            del self._outcomes[key]
