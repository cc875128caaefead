"""``agi-bridge``: serve | call | test | simulate | demo | check | init | calls | show | admin.

Thin: parse, check what can be checked before anything starts, run. Mistakes a user can
fix end in one line naming the setting or option (exit 2), never in a traceback.
Modules: ``logs`` (logging setup), ``run`` (serve, simulate, calls, show), ``demo``,
``init`` (write the bundled configuration), ``ports`` (who holds a port).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from agi_bridge import __version__
from agi_bridge.cli.logs import LEVELS, setup_logging
from agi_bridge.config import Config, load
from agi_bridge.errors import ConfigError

__all__ = ["main", "setup_logging"]

QUIET_COMMANDS = {
    "demo": "WARNING",
    "check": "ERROR",
    "admin": "WARNING",
    "call": "WARNING",
    "test": "WARNING",
}
log = logging.getLogger("agi_bridge")


def _load(path: str | None) -> Config:
    cfg = load(path)
    for line in cfg.warnings:  # `check` prints them itself (its log level hides these)
        log.warning("config: %s", line)
    return cfg


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in LEVELS:
        raise argparse.ArgumentTypeError(
            f"invalid log level {value!r} (choose from {', '.join(LEVELS)})"
        )
    return level


def _add_global_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--log-level/--log-format, accepted before and after the subcommand.

    On subcommands the default is SUPPRESS, so a flag given before the subcommand is not
    reset by the subcommand's parser."""
    default: object = argparse.SUPPRESS
    parser.add_argument(
        "--log-level",
        type=_log_level,
        default=None if top else default,
        help=f"{', '.join(LEVELS)} (default INFO; demo, call, admin: WARNING; check: ERROR)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text" if top else default,
        help="text (default) or json lines",
    )


def _each_subparser(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.append(sub)
                found.extend(_each_subparser(sub))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agi-bridge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=__version__)
    _add_global_flags(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the bridge (AudioSocket + FastAGI + AMI, ARI)")
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
        default="auto",
        help="bridge processes sharing the FastAGI port: a number, or 'auto' (the default:"
        " one per core; 1 when listen.fastagi has port 0 or listen.audiosocket_advertise"
        " is off). With more than one, the supervisor serves listen.http for all of them"
        " (/metrics, /healthz, /admin); on a small box shared with Asterisk, 1 costs less"
        " CPU per call",
    )
    # set by the supervisor for its workers
    p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    p.add_argument("--supervisor-pid", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--http-unix", help=argparse.SUPPRESS)

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

    p = sub.add_parser(
        "init", help="write the Asterisk configuration and an example config into DIR"
    )
    p.add_argument("directory", metavar="DIR", help="where to write (created if missing)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist")

    from agi_bridge.admin import add_cli as add_admin_cli

    add_admin_cli(sub)  # agi-bridge admin calls|say|interrupt|instructions|hangup

    from agi_bridge.outbound import add_cli as add_call_cli

    add_call_cli(sub)  # agi-bridge call DESTINATION --agent NAME --goal ...

    from agi_bridge.ivrtest.runner import add_cli as add_test_cli

    add_test_cli(sub)  # agi-bridge test SUITE.yaml

    p = sub.add_parser("calls", help="list recent calls (from the records directory)")
    p.add_argument("-c", "--config", help="YAML config file (for records.dir and prices)")
    p.add_argument("--limit", type=int, default=20, help="how many calls (default 20)")
    p.add_argument("--dir", help="records directory (default: records.dir of the config)")

    p = sub.add_parser("show", help="print a recorded call: transcript with timings, cost")
    p.add_argument("call_id", help="the call id (a unique prefix is enough)")
    p.add_argument("-c", "--config", help="YAML config file (for records.dir and prices)")
    p.add_argument("--dir", help="records directory (default: records.dir of the config)")

    for subparser in _each_subparser(parser):
        _add_global_flags(subparser, top=False)
    return parser


def _run(args: argparse.Namespace) -> int:
    from agi_bridge.cli import run

    if args.command == "serve":
        return run.serve_command(args, _load(args.config))
    elif args.command == "simulate":
        asyncio.run(run.simulate(args.host, args.port, args.scenario))
    elif args.command == "demo":
        from agi_bridge.cli.demo import DemoFailed, run_demo

        try:
            return asyncio.run(run_demo(_load(args.config), args.say, args.wav))
        except DemoFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    elif args.command == "init":
        from agi_bridge.cli.init import run_init

        return run_init(args.directory, args.force)
    elif args.command == "calls":
        return run.calls(load(args.config), args.dir, args.limit)
    elif args.command == "show":
        return run.show(load(args.config), args.dir, args.call_id)
    elif args.command == "check":
        from agi_bridge.check import check_config, check_connect

        cfg = load(args.config)
        check_config(cfg)
        if args.connect and not asyncio.run(check_connect(cfg)):
            return 1
    elif args.command == "call":
        from agi_bridge.outbound import run_cli as run_call

        return run_call(args, _load(args.config))
    elif args.command == "test":
        from agi_bridge.ivrtest.runner import run_cli as run_test

        return run_test(args, _load(args.config))
    elif args.command == "admin":
        from agi_bridge.admin import run_cli

        return run_cli(args, load(args.config) if args.config else None)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(
        args.log_level or QUIET_COMMANDS.get(args.command, "INFO"),
        args.log_format,
        worker=getattr(args, "worker_index", None),
    )
    try:
        return _run(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
