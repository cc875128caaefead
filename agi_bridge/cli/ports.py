"""Is a listening port free, and if not, who holds it? One-line answers for the CLI.

A port already in use is the most common start-up failure (a second bridge, an Asterisk
of a test run, Docker's published ports). The answer names the setting to change and,
on Linux, the process that holds the port (found through /proc/net and /proc/PID/fd,
readable for one's own processes, and for every process as root).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path

from agi_bridge.errors import ConfigError

_PROC_NET = {
    ("tcp", socket.AF_INET): "tcp",
    ("tcp", socket.AF_INET6): "tcp6",
    ("udp", socket.AF_INET): "udp",
    ("udp", socket.AF_INET6): "udp6",
}
_TCP_LISTEN = "0A"


def _socket_inodes(port: int, proto: str) -> set[str]:
    """Inodes of sockets bound to ``port`` (TCP: listening ones) from /proc/net."""
    inodes: set[str] = set()
    for family in (socket.AF_INET, socket.AF_INET6):
        path = Path("/proc/net") / _PROC_NET[(proto, family)]
        try:
            lines = path.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port != port or (proto == "tcp" and fields[3] != _TCP_LISTEN):
                continue
            inodes.add(fields[9])
    return inodes


def holders(port: int, proto: str = "tcp") -> list[tuple[int, str]]:
    """(pid, command line) of the processes holding ``port``; empty when not visible."""
    wanted = {f"socket:[{inode}]" for inode in _socket_inodes(port, proto)}
    found: list[tuple[int, str]] = []
    if not wanted:
        return found
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in wanted:
                        raw = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
                        found.append((int(proc.name), raw.decode(errors="replace").strip()[:80]))
                        break
    return sorted(found)


def describe_holders(port: int, proto: str = "tcp") -> str:
    """ "held by pid 12 (asterisk -f)" or a hint how to look when it cannot be seen."""
    found = holders(port, proto)
    if not found:
        flag = "t" if proto == "tcp" else "u"
        return f"see `ss -l{flag}np sport = :{port}` for what holds it"
    return "held by " + ", ".join(f"pid {pid} ({cmd or '?'})" for pid, cmd in found)


def check_free(host: str, port: int, setting: str, proto: str = "tcp") -> None:
    """ConfigError naming ``setting`` when ``host:port`` cannot be bound right now.

    Binds the way the servers do (SO_REUSEADDR for TCP, as asyncio and aiohttp set it), so
    a port in TIME_WAIT is not reported. Port 0 (any free port) is always free.
    """
    if port == 0:
        return
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    try:
        infos = socket.getaddrinfo(host or None, port, type=kind, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"{setting}: cannot resolve {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, kind) as sock:
        if proto == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"{setting}: {host}:{port}/{proto} is already in use "
                    f"({describe_holders(port, proto)}); stop that process or change {setting}"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(
                    f"{setting}: {host} is not an address of this machine; change {setting}"
                ) from None
            if exc.errno == errno.EACCES:
                raise ConfigError(
                    f"{setting}: port {port} needs root (ports below 1024); change {setting}"
                ) from None
            raise
