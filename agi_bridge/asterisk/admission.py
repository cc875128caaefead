"""Who may connect to the FastAGI and AudioSocket listeners, and how many at once.

Only Asterisk should reach these ports, and Asterisk opens a connection and speaks at
once (the AGI environment, the AudioSocket UUID). So a listener:

* refuses peers outside ``allowed`` (CIDR networks, IPv4 and IPv6; an IPv4-mapped IPv6
  peer of a dual-stack socket counts as its IPv4 address);
* caps connections per source and in total; when a cap is reached it evicts the oldest
  connection still *waiting* for its first bytes before it refuses anyone, so idle
  sockets can delay nobody: a real request, whose headers come at once, always finds room
  while any idle socket holds a slot;
* logs refusals throttled (one line, then a count every few seconds), because a flood
  must not become a log flood.

The caller marks a ticket ``ready()`` once the first bytes arrived (it is no longer
evictable) and ``release()`` when the connection ends.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = [
    "Admission",
    "IpAddress",
    "Throttle",
    "Ticket",
    "networks",
    "peer_address",
]

log = logging.getLogger(__name__)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK = ("127.0.0.0/8", "::1/128")


def networks(values: Iterable[str]) -> tuple[IpNetwork, ...]:
    """``["127.0.0.1", "10.0.0.0/8", "::1"]`` -> networks (ValueError names a bad one)."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {value!r}") from None
    return tuple(out)


def peer_address(peername: object) -> IpAddress | None:
    """The peer's IP from ``get_extra_info("peername")``; IPv4-mapped IPv6 unwrapped."""
    if not isinstance(peername, tuple) or not peername:
        return None
    try:
        ip = ipaddress.ip_address(str(peername[0]).partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class Throttle:
    """Log a repeated condition once, then at most every ``interval`` s with a count."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, key: str, level: int, fmt: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next.get(key, 0.0):
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        if len(self._next) > 1024:  # keys are per source: keep the table bounded
            self._next.clear()
            self._suppressed.clear()
        self._next[key] = now + self.interval
        more = self._suppressed.pop(key, 0)
        suffix = f" ({more} more like this in the last {self.interval:.0f}s)" if more else ""
        self.logger.log(level, fmt + suffix, *args)


@dataclass(eq=False)
class Ticket:
    """One admitted connection. ``evicted`` is True when the admission closed it."""

    source: IpAddress
    on_evict: Callable[[], object]
    admission: Admission
    waiting: bool = True
    evicted: bool = False
    released: bool = field(default=False)

    def ready(self) -> None:
        """The first bytes arrived: this connection can no longer be evicted."""
        self.waiting = False

    def release(self) -> None:
        self.admission._release(self)


class Admission:
    """The admission policy of one listener (see the module docstring)."""

    def __init__(
        self,
        name: str,
        allowed: Iterable[str] = LOOPBACK,
        *,
        max_connections: int = 200,
        max_per_source: int = 100,
    ) -> None:
        if max_connections < 1 or max_per_source < 1:
            raise ValueError("connection limits must be >= 1")
        self.name = name
        self.allowed = networks(allowed)
        self.max_connections = max_connections
        self.max_per_source = max_per_source
        # insertion order = age: the first waiting ticket is the oldest one
        self._tickets: dict[Ticket, None] = {}
        self._per_source: dict[IpAddress, int] = {}
        self.refused = 0  # connections refused (not allowed, or no room)
        self.evicted = 0  # waiting connections closed to make room
        self._throttle = Throttle(log)

    def __len__(self) -> int:
        return len(self._tickets)

    def permits(self, ip: IpAddress | None) -> bool:
        return ip is not None and any(ip in net for net in self.allowed)

    def admit(self, peername: object, on_evict: Callable[[], object]) -> Ticket | None:
        """A ticket for a new connection from *peername*, or None (refused, logged)."""
        ip = peer_address(peername)
        if ip is None or not self.permits(ip):
            self.refused += 1
            self._throttle(
                f"deny {ip}",
                logging.WARNING,
                "%s: connection from %s refused: not an allowed Asterisk address",
                self.name,
                ip,
            )
            return None
        if self._per_source.get(ip, 0) >= self.max_per_source and not self._evict(ip):
            self._no_room(ip, f"{self.max_per_source} connections from this source")
            return None
        if len(self._tickets) >= self.max_connections and not self._evict(None):
            self._no_room(ip, f"{self.max_connections} connections in progress")
            return None
        ticket = Ticket(ip, on_evict, self)
        self._tickets[ticket] = None
        self._per_source[ip] = self._per_source.get(ip, 0) + 1
        return ticket

    def _no_room(self, ip: IpAddress, why: str) -> None:
        self.refused += 1
        self._throttle(
            f"full {ip}", logging.WARNING, "%s: connection from %s refused: %s", self.name, ip, why
        )

    def _evict(self, source: IpAddress | None) -> bool:
        """Close the oldest waiting connection (of *source*, or any); False if none."""
        victim = next(
            (t for t in self._tickets if t.waiting and (source is None or t.source == source)),
            None,
        )
        if victim is None:
            return False
        victim.evicted = True
        self.evicted += 1
        self._release(victim)
        self._throttle(
            f"evict {victim.source}",
            logging.INFO,
            "%s: closed an idle connection from %s to make room",
            self.name,
            victim.source,
        )
        victim.on_evict()
        return True

    def _release(self, ticket: Ticket) -> None:
        if ticket.released:
            return
        ticket.released = True
        self._tickets.pop(ticket, None)
        left = self._per_source.get(ticket.source, 0) - 1
        if left > 0:
            self._per_source[ticket.source] = left
        else:
            self._per_source.pop(ticket.source, None)
