"""``agi-bridge serve --workers N``: N bridge processes on one host, one supervisor.

One Python process runs on one core. To use every core without breaking call identity
(the FastAGI registration of a call and its AudioSocket connection must meet in the
same process), each worker is a whole Bridge with:

- the FastAGI port shared with the other workers (SO_REUSEPORT: the kernel hands each
  new connection to one of the listening workers, no proxy in the call path);
- its own AudioSocket port, ``listen.audiosocket`` + worker index. The worker that
  registered a call tells the dialplan that address in ``AGI_BRIDGE_AUDIOSOCKET``
  (asterisk/agi.py), so the audio goes to the process that knows the call;
- its HTTP (/metrics, /healthz, /admin) on a Unix socket in the supervisor's private
  directory: the supervisor serves ``listen.http`` itself (front.py) and asks every
  worker, so a host is one scrape target, one health check and one admin URL however
  many workers it runs;
- ``limits.max_calls`` divided between the workers (rounded up);
- ARI (``ari.enabled``) in worker 0 only: Asterisk gives a Stasis application one events
  websocket (a second one takes it over), so every Stasis call lands in worker 0, whose
  ARI transport keeps the whole ``limits.max_calls`` (its AudioSocket keeps its share).

The supervisor (this module, no event loop of its own) starts the workers, restarts one
that exits (with a growing delay if it keeps dying at start-up), forwards SIGTERM/SIGINT
to all of them (a second signal again: the workers then hand their live calls to the
dialplan's fallback), waits for their calls to finish, and exits 0. A worker dies with its
supervisor (PR_SET_PDEATHSIG, set by the worker itself: the supervisor runs the front's
thread, and ``preexec_fn`` is unsafe in a process with threads), so a killed supervisor
leaves no orphan listening on the ports.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from types import FrameType

from agi_bridge.config import Config, split_hostport
from agi_bridge.errors import ConfigError
from agi_bridge.libc import libc

log = logging.getLogger("agi_bridge.workers")

RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 30.0
STABLE_AFTER_S = 10.0  # a worker that ran this long before exiting restarts at once
STOP_TIMEOUT_S = 60.0  # live calls get this long after SIGTERM (then SIGKILL)
CONFIG_ERROR_EXIT = 2  # the CLI's status for a ConfigError: restarting cannot mend it
POLL_S = 0.2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def default_workers(cfg: Config) -> int:
    """``--workers auto`` (the default): cores, or 1 where workers cannot work: an
    ephemeral FastAGI port (they cannot share port 0), or an AudioSocket address the
    dialplan is not told (``audiosocket_advertise: off``: it cannot find the worker)."""
    if _single_only(cfg):
        return 1
    return cores()


def cores() -> int:
    """The cores this process may run on (a cpuset or container limit, not the host's)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _single_only(cfg: Config) -> str:
    """Why this config runs in one process only ("" = it need not)."""
    if split_hostport(cfg.listen.fastagi)[1] == 0:
        return f"listen.fastagi {cfg.listen.fastagi!r}: workers need a fixed FastAGI port"
    if cfg.listen.audiosocket_advertise == "off":
        return (
            "listen.audiosocket_advertise 'off': the dialplan is not told which worker's"
            " AudioSocket port a call belongs to"
        )
    return ""


def check(cfg: Config, workers: int) -> None:
    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be at least 1")
    why = _single_only(cfg) if workers > 1 else ""
    if why:
        raise ConfigError(f"{cfg.source or 'config'}: {why} (--workers {workers}; use 1)")


def _shift(hostport: str, index: int) -> str:
    if not hostport:
        return hostport
    host, port = split_hostport(hostport)
    if port == 0:
        return hostport  # ephemeral stays ephemeral (the AGI answer tells the real one)
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port + index}"


def worker_config(cfg: Config, index: int, count: int) -> Config:
    """The config of worker ``index`` of ``count`` (see the module docstring).
    ``listen.http`` stays the front's address (the admin checks judge that one)."""
    listen = dataclasses.replace(cfg.listen, audiosocket=_shift(cfg.listen.audiosocket, index))
    ari = dataclasses.replace(cfg.ari, enabled=cfg.ari.enabled and index == 0)
    limits = dataclasses.replace(cfg.limits, max_calls=math.ceil(cfg.limits.max_calls / count))
    return dataclasses.replace(cfg, listen=listen, limits=limits, ari=ari)


def http_sockets(directory: str, count: int) -> list[str]:
    """Where each worker serves its HTTP for the front."""
    return [os.path.join(directory, f"worker-{i}.sock") for i in range(count)]


def die_with_parent(supervisor_pid: int) -> None:
    """In a worker: get SIGTERM when the supervisor dies; exit now if it already has."""
    c = libc()
    if c is not None:
        c.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if supervisor_pid and os.getppid() != supervisor_pid:  # died before the prctl
        raise SystemExit(f"worker: supervisor {supervisor_pid} is gone")


class Supervisor:
    """Runs ``command(index)`` for each of ``count`` workers until told to stop."""

    def __init__(
        self,
        command: Callable[[int], Sequence[str]],
        count: int,
        *,
        stop_timeout: float = STOP_TIMEOUT_S,
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = command
        self.count = count
        self.stop_timeout = stop_timeout
        self.env = env
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self.started_at = [0.0] * count
        self.delay = [RESTART_DELAY_S] * count
        self.restart_at = [0.0] * count
        self.restarts = 0
        # a plain flag, polled: a signal handler must not take the lock of a
        # threading.Event that the main thread may be holding in wait() (deadlock)
        self._stopping = False
        self.signal_received: int | None = None
        self.exit_status = 0

    def _start(self, index: int) -> None:
        # its own session: a Ctrl-C in the terminal reaches the supervisor only, which
        # passes one SIGTERM on (two signals at once would make a worker hurry its calls)
        proc = subprocess.Popen(list(self.command(index)), env=self.env, start_new_session=True)
        self.procs[index] = proc
        self.started_at[index] = time.monotonic()
        log.info("worker %d started (pid %d)", index, proc.pid)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        again = self._stopping and self.signal_received is not None
        self.signal_received = signum
        self._stopping = True
        if again:  # a second stop signal: the workers hand their live calls over now
            for proc in self.procs:
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """Ask ``run`` to stop (as SIGTERM does); from any thread."""
        self._stopping = True

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        log.info("supervising %d workers (pid %d)", self.count, os.getpid())
        try:
            for i in range(self.count):
                self._start(i)
            while not self._stopping:
                time.sleep(POLL_S)  # a signal interrupts it; its handler only sets flags
                if not self._stopping:
                    self._check_workers()
        finally:
            try:
                self._stop_all()
            finally:
                for sig, handler in previous.items():  # the caller's own, back
                    signal.signal(sig, handler)
        return self.exit_status

    def _check_workers(self) -> None:
        now = time.monotonic()
        for i, proc in enumerate(self.procs):
            if proc is None:
                if now >= self.restart_at[i]:
                    self._start(i)
                continue
            rc = proc.poll()
            if rc is None:
                continue
            ran = now - self.started_at[i]
            # a config error at start-up cannot be mended by restarting; after a long
            # run the same status is a fault of the moment (a port taken meanwhile)
            if rc == CONFIG_ERROR_EXIT and ran < STABLE_AFTER_S:
                log.error(
                    "worker %d refused its configuration (the error is above): stopping all",
                    i,
                )
                self.procs[i] = None
                self.exit_status = CONFIG_ERROR_EXIT
                self._stopping = True
                return
            # a worker that keeps dying at start-up (port taken, bad config) waits longer
            self.delay[i] = (
                RESTART_DELAY_S
                if ran >= STABLE_AFTER_S
                else min(self.delay[i] * 2, MAX_RESTART_DELAY_S)
            )
            wait = 0.0 if ran >= STABLE_AFTER_S else self.delay[i]
            log.error(
                "worker %d (pid %d) exited with status %s after %.1f s: restarting in %.1f s",
                i,
                proc.pid,
                rc,
                ran,
                wait,
            )
            self.procs[i] = None
            self.restart_at[i] = now + wait
            self.restarts += 1

    def _stop_all(self) -> None:
        live = [p for p in self.procs if p is not None and p.poll() is None]
        log.info("stopping %d workers (their live calls get %.0f s)", len(live), self.stop_timeout)
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for proc in live:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d still running: killing it", proc.pid)
                proc.kill()
                proc.wait()
        log.info("all workers stopped")
