"""How ``serve --workers N`` splits one config between its workers (agi_bridge/workers.py)."""

from __future__ import annotations

import os

import pytest

from agi_bridge.config import load_text
from agi_bridge.errors import ConfigError
from agi_bridge.workers import check, cores, default_workers, http_sockets, worker_config


def cfg(listen: str, max_calls: int = 100):  # type: ignore[no-untyped-def]
    return load_text(f"listen: {listen}\nlimits: {{max_calls: {max_calls}}}\n", "w.yaml")


def test_each_worker_gets_its_own_audiosocket_port_and_a_share_of_calls() -> None:
    c = cfg('{audiosocket: "0.0.0.0:9092", fastagi: "0.0.0.0:4573", http: "127.0.0.1:8088"}', 5)
    w1 = worker_config(c, 1, 2)
    assert (w1.listen.audiosocket, w1.listen.http, w1.listen.fastagi) == (
        "0.0.0.0:9093",
        "127.0.0.1:8088",  # the front's: workers serve HTTP on a Unix socket behind it
        "0.0.0.0:4573",  # shared (SO_REUSEPORT)
    )
    assert w1.limits.max_calls == 3  # 5 over 2 workers, rounded up
    w0 = worker_config(c, 0, 2)
    assert (w0.listen.audiosocket, w0.listen.http) == ("0.0.0.0:9092", "127.0.0.1:8088")
    assert not w0.ari.enabled and not w1.ari.enabled


def test_ari_runs_in_worker_0_only() -> None:
    c = load_text(
        'listen: {fastagi: "127.0.0.1:4573"}\nlimits: {max_calls: 10}\nari: {enabled: true}\n',
        "w.yaml",
    )
    w0, w1, w2 = (worker_config(c, i, 3) for i in range(3))
    assert (w0.ari.enabled, w1.ari.enabled, w2.ari.enabled) == (True, False, False)
    # its AudioSocket keeps its share; the whole limit for Stasis calls is handed to its
    # ARI transport by `serve` (ari_max_calls), since every Stasis call lands there
    assert (w0.limits.max_calls, w1.limits.max_calls) == (4, 4)


def test_the_ari_transport_takes_its_own_limit() -> None:
    from agi_bridge.transports.ari import AriTransport

    async def start_call(*_: object) -> None: ...

    c = load_text("limits: {max_calls: 4}\nari: {enabled: true}\n", "w.yaml")
    assert AriTransport(c, start_call).max_calls == 4
    assert AriTransport(c, start_call, max_calls=10).max_calls == 10


def test_each_worker_has_its_own_http_socket_in_the_private_directory() -> None:
    assert http_sockets("/run/x", 2) == ["/run/x/worker-0.sock", "/run/x/worker-1.sock"]


def test_ephemeral_and_disabled_listeners_stay_so_and_ipv6_keeps_brackets() -> None:
    c = cfg('{audiosocket: "[::1]:0", fastagi: "[::1]:4573", http: ""}')
    w = worker_config(c, 3, 4)
    assert (w.listen.audiosocket, w.listen.http) == ("[::1]:0", "")
    c = cfg('{audiosocket: "[::1]:9092", fastagi: "[::1]:4573", http: ""}')
    assert worker_config(c, 2, 4).listen.audiosocket == "[::1]:9094"


def test_workers_need_a_fixed_fastagi_port() -> None:
    c = cfg('{audiosocket: "127.0.0.1:0", fastagi: "127.0.0.1:0", http: ""}')
    assert default_workers(c) == 1
    check(c, 1)
    with pytest.raises(ConfigError, match=r"w.yaml: listen.fastagi .*fixed FastAGI port"):
        check(c, 2)
    with pytest.raises(ConfigError, match="at least 1"):
        check(c, 0)


def test_auto_is_one_process_when_the_dialplan_cannot_find_a_worker() -> None:
    c = cfg('{fastagi: "127.0.0.1:4573", audiosocket_advertise: "off"}')
    assert default_workers(c) == 1
    with pytest.raises(ConfigError, match=r"audiosocket_advertise 'off'.*--workers 2; use 1"):
        check(c, 2)
    told = cfg('{fastagi: "127.0.0.1:4573"}')
    assert default_workers(told) == cores() >= 1
    assert cores() <= (os.cpu_count() or 1)  # the affinity mask, not more than the host
