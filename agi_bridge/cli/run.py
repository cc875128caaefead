"""``agi-bridge serve | simulate | calls | show``: start-up checks, then run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import sys
import tempfile
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


def check_listeners(cfg: Config, *, shared_fastagi: bool = False, http_unix: bool = False) -> None:
    """ConfigError naming the setting when a listener's port is taken (before starting).
    A worker shares the FastAGI port with its siblings (SO_REUSEPORT, ``shared_fastagi``)
    and serves HTTP on a Unix socket while the supervisor holds listen.http (``http_unix``)."""
    skip = {"listen.fastagi"} if shared_fastagi else set()
    skip |= {"listen.http"} if http_unix else set()
    check_listeners_of(cfg, tuple(s for s, _ in listeners(cfg) if s not in skip))


def check_listeners_of(cfg: Config, settings: tuple[str, ...]) -> None:
    for setting, value in listeners(cfg):
        if setting in settings:
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
        workers.die_with_parent(args.supervisor_pid)
        worker_cfg = workers.worker_config(cfg, args.worker_index, count)
        worker = f"{args.worker_index}/{count}"
        serving = serve(
            worker_cfg,
            worker,
            http_unix=args.http_unix or "",
            ari_max_calls=cfg.limits.max_calls,  # worker 0's ARI takes every Stasis call
        )
        eventloop.run(serving, args.loop)
    elif count == 1:
        eventloop.run(serve(cfg), args.loop)
    else:
        return supervise(args, cfg, count)
    return 0


def supervise(args: argparse.Namespace, cfg: Config, count: int) -> int:
    """``serve --workers N``: the front on ``listen.http``, N workers behind it."""
    from agi_bridge import workers
    from agi_bridge.admin import check_admin_auth, ensure_admin_token
    from agi_bridge.front import Front

    # every port before any worker starts: a taken one is a start-up error, not a loop
    # of workers dying (their own checks skip the shared FastAGI port and listen.http)
    check_listeners(cfg)
    for index in range(1, count):
        check_listeners_of(workers.worker_config(cfg, index, count), ("listen.audiosocket",))
    rundir = tempfile.mkdtemp(prefix="agi-bridge-")  # mode 0700: the workers' HTTP sockets
    sockets = workers.http_sockets(rundir, count)
    supervisor_pid = str(os.getpid())

    def command(index: int) -> list[str]:
        cmd = [sys.executable, "-m", "agi_bridge", "--log-format", args.log_format]
        cmd += ["--log-level", args.log_level] if args.log_level else []
        cmd += ["serve", "--loop", args.loop, "--workers", str(count)]
        cmd += ["-c", args.config] if args.config else []
        cmd += ["--supervisor-pid", supervisor_pid, "--http-unix", sockets[index]]
        return [*cmd, "--worker-index", str(index)]

    supervisor = workers.Supervisor(command, count)
    front: Front | None = None
    try:
        if cfg.listen.http:
            if cfg.admin.enabled:  # once here, not raced by N workers generating tokens
                check_admin_auth(cfg)
                ensure_admin_token(cfg)
            front = Front(
                cfg.listen.http,
                sockets,
                admin=cfg.admin.enabled,
                restarts=lambda: supervisor.restarts,
                max_connections=cfg.limits.max_http_connections,
                idle_timeout=cfg.limits.http_idle_timeout_s,
            )
            try:
                front.start()
            except OSError as exc:
                explained = explain_bind_error(cfg, exc)
                if explained is None:
                    raise
                raise explained from None
        return supervisor.run()
    finally:
        if front is not None:
            front.stop()
        shutil.rmtree(rundir, ignore_errors=True)


async def serve(
    cfg: Config, worker: str = "", *, http_unix: str = "", ari_max_calls: int | None = None
) -> None:
    from agi_bridge.app import Bridge
    from agi_bridge.eventloop import name as loop_name
    from agi_bridge.eventloop import settle_heap

    check_listeners(cfg, shared_fastagi=bool(worker), http_unix=bool(http_unix))
    warn_about_ami(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    bridge = Bridge(
        cfg, reuse_fastagi_port=bool(worker), http_unix=http_unix, ari_max_calls=ari_max_calls
    )

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
