"""``agi-bridge serve | simulate | calls | show``: start-up checks, then run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from agi_bridge import __version__
from agi_bridge.cli.ports import check_free, describe_holders
from agi_bridge.config import Config, split_hostport
from agi_bridge.errors import ConfigError

log = logging.getLogger("agi_bridge")

AMI_GRACE_S = 5.0  # after this long without an AMI login, say why /healthz answers 503


def listeners(cfg: Config) -> list[tuple[str, str]]:
    """(setting, "host:port") of every TCP listener ``serve`` opens."""
    out = [("listen.audiosocket", cfg.listen.audiosocket), ("listen.fastagi", cfg.listen.fastagi)]
    if cfg.listen.http:
        out.append(("listen.http", cfg.listen.http))
    return out


def check_listeners(cfg: Config, *, shared_fastagi: bool = False) -> None:
    """ConfigError naming the setting when a listener's port is taken (before starting).
    ``shared_fastagi``: a worker shares the FastAGI port with its siblings (SO_REUSEPORT)."""
    for setting, value in listeners(cfg):
        if shared_fastagi and setting == "listen.fastagi":
            continue
        host, port = split_hostport(value)
        check_free(host, port, setting)


def explain_bind_error(cfg: Config, exc: OSError) -> ConfigError | None:
    """The one-line error for an "address already in use" that slipped past the check."""
    if exc.errno != errno.EADDRINUSE:
        return None
    for setting, value in listeners(cfg):
        _host, port = split_hostport(value)
        if f", {port})" in str(exc) or f":{port}" in str(exc):
            return ConfigError(
                f"{setting}: {value} is already in use ({describe_holders(port)}); "
                f"stop that process or change {setting}"
            )
    return ConfigError(f"cannot listen: {exc.strerror}")


def warn_about_ami(cfg: Config) -> None:
    if cfg.ami.enabled and not cfg.ami.secret_file and not cfg.ami_secret():
        log.warning(
            "AMI secret is empty: set the environment variable %s (ami.secret_env) or "
            "ami.secret_file to the secret of the [%s] user in Asterisk's manager.conf",
            cfg.ami.secret_env,
            cfg.ami.username,
        )


async def _explain_unhealthy(cfg: Config, ami: Any) -> None:
    """/healthz is 503 until AMI is logged in: say so, once, if that takes a while."""
    await asyncio.sleep(AMI_GRACE_S)
    if ami is None or getattr(ami, "connected", True):
        return
    why = getattr(ami, "last_error", "") or "no answer yet"
    log.warning(
        "not logged in to AMI at %s:%d after %.0f s (%s): /healthz answers 503 until it is. "
        "Is Asterisk running with asterisk-config/manager.conf (`agi-bridge init`)? "
        "To run without Asterisk, set ami.enabled: false",
        cfg.ami.host,
        cfg.ami.port,
        AMI_GRACE_S,
        why,
    )


def serve_command(args: argparse.Namespace, cfg: Config) -> int:
    """One process, a worker of a supervisor, or the supervisor of N workers."""
    from agi_bridge import eventloop, workers

    if args.workers == "auto":
        count = workers.default_workers(cfg)
    elif args.workers.isdigit():
        count = int(args.workers)
    else:
        raise ConfigError(f"--workers {args.workers!r}: a number or 'auto'")
    workers.check(cfg, count)
    if args.worker_index is not None:
        worker_cfg = workers.worker_config(cfg, args.worker_index, count)
        eventloop.run(serve(worker_cfg, f"{args.worker_index}/{count}"), args.loop)
    elif count == 1:
        eventloop.run(serve(cfg), args.loop)
    else:

        def command(index: int) -> list[str]:
            cmd = [sys.executable, "-m", "agi_bridge", "--log-format", args.log_format]
            cmd += ["--log-level", args.log_level] if args.log_level else []
            cmd += ["serve", "--loop", args.loop, "--workers", str(count)]
            cmd += ["-c", args.config] if args.config else []
            return [*cmd, "--worker-index", str(index)]

        return workers.Supervisor(command, count).run()
    return 0


async def serve(cfg: Config, worker: str = "") -> None:
    from agi_bridge.app import Bridge
    from agi_bridge.eventloop import name as loop_name
    from agi_bridge.eventloop import settle_heap

    check_listeners(cfg, shared_fastagi=bool(worker))
    warn_about_ami(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    bridge = Bridge(cfg, reuse_fastagi_port=bool(worker))

    def on_signal() -> None:
        if stop.is_set():
            log.info("second stop signal: live calls go to the fallback now")
            bridge.hurry()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    try:
        await bridge.start()
    except OSError as exc:
        await bridge.close()
        explained = explain_bind_error(cfg, exc)
        if explained is None:
            raise
        raise explained from None
    frozen = settle_heap()
    try:
        log.info(
            "agi-bridge %s ready (config %s, %s event loop%s, %d start-up objects frozen)",
            __version__,
            cfg.source or "built-in",
            loop_name(),
            f", worker {worker}" if worker else "",
            frozen,
        )
        hint = asyncio.create_task(_explain_unhealthy(cfg, bridge.ami))
        await stop.wait()
        hint.cancel()
        log.info("shutting down: refusing new calls, draining live ones")
        await bridge.drain(cfg.limits.drain_timeout_s)
    finally:
        await bridge.close()
    log.info("stopped")


async def simulate(host: str, port: int, scenario_file: str | None) -> None:
    from agi_bridge.simulator import Scenario, run_simulator

    scenario = Scenario.from_yaml(scenario_file) if scenario_file else None
    check_free(host, port, "--port")
    await run_simulator(host, port, scenario, stop_on_signals=True)


def calls(cfg: Config, records_dir: str | None, limit: int) -> int:
    from agi_bridge.records import format_calls, recent_summaries

    root = Path(records_dir or cfg.records.dir)
    if not root.is_dir():
        print(f"no records in {root}", file=sys.stderr)
        return 1
    print(format_calls(recent_summaries(root, cfg.prices, limit)))
    return 0


def show(cfg: Config, records_dir: str | None, call_id: str) -> int:
    from agi_bridge.records import show_call

    root = Path(records_dir or cfg.records.dir)
    text = show_call(root, call_id, cfg.prices)
    if text is None:
        print(f"no call {call_id!r} in {root} (or the prefix is not unique)", file=sys.stderr)
        return 1
    print(text)
    return 0
