"""``agi-bridge``: serve | call | simulate | demo | check | calls | show. Thin: parse, run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
import wave
from typing import Any

from agi_bridge import __version__
from agi_bridge.config import Config, load
from agi_bridge.errors import ConfigError

log = logging.getLogger("agi_bridge")


class _CallIdFilter(logging.Filter):
    """Every record gets a call_id (``-`` outside a call) so formats can always use it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = "-"
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "call_id": getattr(record, "call_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str, fmt: str, handler: logging.Handler | None = None) -> None:
    """Root logging: every line carries the call id; ``fmt`` is "text" or "json"."""
    handler = handler or logging.StreamHandler()
    handler.addFilter(_CallIdFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s [%(call_id)s] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("websockets").setLevel(logging.WARNING)


def _load(path: str | None) -> Config:
    return load(path)


async def _serve(cfg: Config, worker: str = "") -> None:
    from agi_bridge.app import Bridge

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    from agi_bridge.eventloop import name as loop_name

    async with Bridge(cfg, reuse_fastagi_port=bool(worker)):
        log.info(
            "agi-bridge %s ready (config %s, %s event loop%s)",
            __version__,
            cfg.source or "built-in",
            loop_name(),
            f", worker {worker}" if worker else "",
        )
        await stop.wait()
        log.info("shutting down: finishing live calls")


def _calls(cfg: Config, records_dir: str | None, limit: int) -> int:
    from pathlib import Path

    from agi_bridge.records import format_calls, recent_summaries

    root = Path(records_dir or cfg.records.dir)
    if not root.is_dir():
        print(f"no records in {root}", file=sys.stderr)
        return 1
    print(format_calls(recent_summaries(root, cfg.prices, limit)))
    return 0


def _show(cfg: Config, records_dir: str | None, call_id: str) -> int:
    from pathlib import Path

    from agi_bridge.records import show_call

    root = Path(records_dir or cfg.records.dir)
    text = show_call(root, call_id, cfg.prices)
    if text is None:
        print(f"no call {call_id!r} in {root} (or the prefix is not unique)", file=sys.stderr)
        return 1
    print(text)
    return 0


async def _simulate(host: str, port: int, scenario_file: str | None) -> None:
    from agi_bridge.simulator import Scenario, run_simulator

    scenario = Scenario.from_yaml(scenario_file) if scenario_file else None
    await run_simulator(host, port, scenario)


async def _demo(cfg: Config, say: str, wav_out: str) -> int:
    """One whole call offline: bridge + simulator + a virtual caller over AudioSocket."""
    import dataclasses

    from agi_bridge.app import Bridge
    from agi_bridge.call.events import CallView
    from agi_bridge.virtual_caller import VirtualCaller, espeak

    cfg = dataclasses.replace(
        cfg,
        listen=dataclasses.replace(
            cfg.listen,
            audiosocket="127.0.0.1:0",
            fastagi="127.0.0.1:0",
            http="",
            audiosocket_unregistered="default_agent",  # the virtual caller has no FastAGI
        ),
        ami=dataclasses.replace(cfg.ami, enabled=False),
    )

    def show(call: CallView, kind: str, data: dict[str, Any]) -> None:
        t = f"{call.duration_s:5.1f}s"
        if kind == "agent_transcript":
            print(f"{t}  agent : {data['text']}", flush=True)
        elif kind == "caller_transcript":
            print(f"{t}  caller: {data['text']}", flush=True)
        elif kind == "barge_in":
            print(
                f"{t}  (caller talked over the agent: playout cleared, item truncated at "
                f"{data['audio_end_ms']} ms heard)",
                flush=True,
            )
        elif kind == "turn_latency":
            print(f"{t}  (first agent audio {data['ms']:.0f} ms after the caller stopped)")
        elif kind == "end":
            print(f"{t}  call ended: {data['reason']} {data['detail']}", flush=True)

    async with Bridge(cfg, observers=(show,)) as bridge:
        if bridge.simulator is not None:
            print(f"Realtime: bundled SIMULATOR at {bridge.simulator.url} (no OPENAI_API_KEY)")
        if shutil.which("espeak-ng"):
            speech = espeak(say)
        else:
            from agi_bridge.simulator.synth import render_word

            speech = b"".join(
                render_word(w, 320, 8000, i).tobytes() for i, w in enumerate(say.split())
            )
        async with VirtualCaller("127.0.0.1", bridge.audiosocket.port) as caller:
            print(f"virtual caller connected (call {caller.uuid})")
            await caller.wait_quiet(after_audio=True, timeout=30)  # hear the whole greeting
            print(f"       caller says: {say!r} ({len(speech) / 16000:.1f} s of audio)")
            caller.say(speech)
            await caller.wait_spoken()
            await caller.wait_quiet(after_audio=True, timeout=30)  # hear the whole answer
            caller.hangup()
            await asyncio.sleep(0.3)
        heard = bytes(caller.heard.pcm)
    with wave.open(wav_out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(heard)
    print(f"what the caller heard: {wav_out} ({len(heard) / 16000:.1f} s)")
    summary = bridge.monitoring.records.last_summary
    if summary and summary.get("record_dir"):
        print(f"call record: {summary['record_dir']} (agi-bridge show {summary['call_id']})")
    return 0


def _serve_command(args: argparse.Namespace) -> int:
    """One process, a worker of a supervisor, or the supervisor of N workers."""
    from agi_bridge import eventloop, workers

    cfg = _load(args.config)
    if args.workers == "auto":
        count = workers.default_workers(cfg)
    elif args.workers.isdigit():
        count = int(args.workers)
    else:
        raise ConfigError(f"--workers {args.workers!r}: a number or 'auto'")
    workers.check(cfg, count)
    if args.worker_index is not None:
        worker_cfg = workers.worker_config(cfg, args.worker_index, count)
        eventloop.run(_serve(worker_cfg, f"{args.worker_index}/{count}"), args.loop)
    elif count == 1:
        eventloop.run(_serve(cfg), args.loop)
    else:

        def command(index: int) -> list[str]:
            cmd = [sys.executable, "-m", "agi_bridge", "--log-format", args.log_format]
            cmd += ["--log-level", args.log_level] if args.log_level else []
            cmd += ["serve", "--loop", args.loop, "--workers", str(count)]
            cmd += ["-c", args.config] if args.config else []
            return [*cmd, "--worker-index", str(index)]

        return workers.Supervisor(command, count).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agi-bridge", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--log-level", help="DEBUG, INFO (default), WARNING; demo: WARNING")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the bridge (AudioSocket + FastAGI + AMI)")
    p.add_argument("-c", "--config", help="YAML config file (default: built-in defaults)")
    p.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="asyncio",
        help="event loop (default asyncio; uvloop: the 'fast' extra, see bench/README.md;"
        " auto: uvloop when installed)",
    )
    p.add_argument(
        "--workers",
        default="1",
        help="bridge processes sharing the FastAGI port: a number, or 'auto' (one per core;"
        " 1 when listen.fastagi has port 0). Default 1: /metrics, /healthz and the admin"
        " API are per worker (listen.http + index)",
    )
    p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the supervisor

    p = sub.add_parser("simulate", help="run the local Realtime-protocol simulator (test double)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--scenario", help="scenario YAML file")

    p = sub.add_parser("demo", help="one offline call: bridge + simulator + virtual caller")
    p.add_argument("-c", "--config")
    p.add_argument("--say", default="Hello, I would like to know your opening hours please.")
    p.add_argument("--wav", default="demo-heard.wav", help="where to write what the caller heard")

    p = sub.add_parser("check", help="validate a config file (--connect: and its peers)")
    p.add_argument("-c", "--config", help="YAML config file (default: built-in defaults)")
    p.add_argument(
        "--connect", action="store_true", help="also log in to AMI and open a Realtime session"
    )

    from agi_bridge.admin import add_cli as add_admin_cli

    add_admin_cli(sub)  # agi-bridge admin calls|say|interrupt|instructions|hangup

    from agi_bridge.outbound import add_cli as add_call_cli

    add_call_cli(sub)  # agi-bridge call DESTINATION --agent NAME --goal ...

    p = sub.add_parser("calls", help="list recent calls (from the records directory)")
    p.add_argument("-c", "--config", help="YAML config file (for records.dir and prices)")
    p.add_argument("--limit", type=int, default=20, help="how many calls (default 20)")
    p.add_argument("--dir", help="records directory (default: records.dir of the config)")

    p = sub.add_parser("show", help="print a recorded call: transcript with timings, cost")
    p.add_argument("call_id", help="the call id (a unique prefix is enough)")
    p.add_argument("-c", "--config", help="YAML config file (for records.dir and prices)")
    p.add_argument("--dir", help="records directory (default: records.dir of the config)")

    args = parser.parse_args(argv)
    setup_logging(
        args.log_level
        or {"demo": "WARNING", "check": "ERROR", "admin": "WARNING", "call": "WARNING"}.get(
            args.command, "INFO"
        ),
        args.log_format,
    )
    try:
        if args.command == "serve":
            return _serve_command(args)
        elif args.command == "simulate":
            asyncio.run(_simulate(args.host, args.port, args.scenario))
        elif args.command == "demo":
            return asyncio.run(_demo(_load(args.config), args.say, args.wav))
        elif args.command == "calls":
            return _calls(_load(args.config), args.dir, args.limit)
        elif args.command == "show":
            return _show(_load(args.config), args.dir, args.call_id)
        elif args.command == "check":
            from agi_bridge.check import check_config, check_connect

            cfg = _load(args.config)
            check_config(cfg)
            if args.connect and not asyncio.run(check_connect(cfg)):
                return 1
        elif args.command == "call":
            from agi_bridge.outbound import run_cli as run_call

            return run_call(args, _load(args.config))
        elif args.command == "admin":
            from agi_bridge.admin import run_cli

            return run_cli(args, _load(args.config) if args.config else None)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
