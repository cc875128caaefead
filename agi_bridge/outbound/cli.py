"""``agi-bridge call`` on the command line: arguments, --csv, the printed result."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import Any

from agi_bridge.config import Config
from agi_bridge.errors import ConfigError
from agi_bridge.outbound.call import OutboundCall
from agi_bridge.outbound.result import AMD_POLICIES, OUTCOME_TEXT, CallResult, Printer
from agi_bridge.prompt_context import parse_var

# ---------------------------------------------------------------------------- output


def _digit_groups(digits: list[dict[str, Any]], gap_s: float = 1.0) -> str:
    """``2 at 12.6 s, 1 at 18.7 s, 12345# at 23.3-24.8 s``."""
    groups: list[list[dict[str, Any]]] = []
    for d in digits:
        if groups and d["t"] - groups[-1][-1]["t"] <= gap_s:
            groups[-1].append(d)
        else:
            groups.append([d])
    parts = []
    for g in groups:
        keys = "".join(d["digit"] for d in g)
        when = f"{g[0]['t']:.1f} s" if len(g) == 1 else f"{g[0]['t']:.1f}-{g[-1]['t']:.1f} s"
        parts.append(f"{keys} at {when}")
    return ", ".join(parts) if parts else "none"


def format_result(r: CallResult, *, transcript: bool) -> str:
    """The human summary printed at the end of ``agi-bridge call``."""
    lines = [
        "",
        f"Result: {OUTCOME_TEXT.get(r.outcome, r.outcome)} (exit code {r.exit_code})",
        f"  detail      {r.detail or '-'}",
        f"  called      {r.destination}" + (f"  as {r.dial}" if r.dial != r.destination else ""),
        f"  agent       {r.agent}   goal: {r.goal}",
    ]
    if r.answered:
        lines.append(
            f"  duration    {r.duration_s:.1f} s (answered after {r.answered_after_s or 0:.1f} s"
            f", channel {r.channel})"
        )
    else:
        lines.append(f"  duration    {r.duration_s:.1f} s (not answered)")
    if r.hangup_cause:
        lines.append(f"  hangup      cause {r.hangup_cause} ({r.hangup_cause_text})")
    lines.append(f"  digits      {_digit_groups(r.digits)}")
    tin = sum(v for k, v in r.tokens.items() if k.endswith("_in"))
    tout = sum(v for k, v in r.tokens.items() if k.endswith("_out"))
    cost = f", estimated cost ${r.cost_usd:.4f}" if r.cost_usd is not None else ""
    lines.append(f"  tokens      {tin} in / {tout} out{cost}")
    if r.record_dir:
        lines.append(f"  record      {r.record_dir}")
    if transcript:
        lines.append("  transcript")
        for entry in r.transcript:
            if "text" in entry:
                lines.append(f"    {entry['t']:6.1f}s  {entry['who']}: {entry['text']}")
            else:
                lines.append(f"    {entry['t']:6.1f}s  {entry['who']} pressed {entry['dtmf']}")
        if not r.transcript:
            lines.append("    (nothing was said)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- CLI

EPILOG = """\
destinations:
  PJSIP/6002                a channel, as Originate takes it (PJSIP/5551234@trunk ...)
  Local/500@agi-bridge-ivr-demo   a dialplan extension (the demo phone menu)
  5551234                   a plain number: Local/5551234@<outbound.dial_context>

The agent reports the goal achieved by hanging up with a reason starting with
"goal achieved" (it is told so); anything else is "goal not achieved".

exit codes:
  0  goal achieved            5  busy
  1  goal not achieved        6  congestion
  2  usage or config error    7  failed (invalid destination, unreachable, bridge error)
  3  the far end hung up      8  timeout (--timeout)
  4  no answer                9  an answering machine (--amd hangup)
  12 voicemail left (--amd message)
  10 stuck, 11 dead air       (agi-bridge test)
  130 interrupted (Ctrl-C)

--csv FILE: one call per row (header: destination, and optionally goal, agent,
caller_id; empty cells use --goal/--agent/--caller-id), --concurrency at a time. Exit
code 0 when every call achieved its goal, else 1 (each result has its own outcome and
exit_code); --json prints a list.
"""


def add_cli(sub: Any) -> None:
    """``agi-bridge call`` (``sub``: the subparsers of the main parser)."""
    p = sub.add_parser(
        "call",
        help="place an outbound call: an agent dials, navigates menus, reaches a goal",
        description="Place an outbound call through AMI Originate; the agent works toward "
        "the goal (pressing keys, talking) and the result is printed at the end.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "destination",
        nargs="?",
        help="PJSIP/ENDPOINT, TECH/..., Local/EXTEN@CONTEXT or a number (or --csv)",
    )
    p.add_argument("-c", "--config", help="YAML config file (default: built-in defaults)")
    p.add_argument("--agent", required=True, help="agent of the config that makes the call")
    p.add_argument("--goal", help="what the agent must achieve on the call (required)")
    p.add_argument(
        "--timeout",
        type=float,
        help="whole call, dialing included (default outbound.timeout_s, 300)",
    )
    p.add_argument(
        "--ring-timeout",
        type=float,
        help="how long it may ring (default outbound.ring_timeout_s, 30)",
    )
    p.add_argument(
        "--caller-id", help="CallerID, e.g. '\"Bot\" <5551000>' (default outbound.caller_id)"
    )
    p.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a value for {KEY} in the goal, instructions and greeting (repeatable); "
        "{caller_id} and {dnid} are always known",
    )
    p.add_argument(
        "--amd",
        choices=AMD_POLICIES,
        help="detect answering machines (Asterisk AMD()) and, for a machine: hangup, "
        "message (leave --voicemail-message after the beep) or talk",
    )
    p.add_argument("--voicemail-message", default="", help="--amd message: what to say")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument(
        "--record",
        metavar="DIR",
        help="write the call record (events, summary, stereo wav, result.json) under DIR",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no live transcript")
    p.add_argument(
        "--scenario", help="scenario YAML for the bundled simulator (when no Realtime key is set)"
    )
    p.add_argument("--csv", metavar="FILE", help="call every destination of a CSV file")
    p.add_argument(
        "--concurrency", type=int, default=1, help="--csv: calls at the same time (default 1)"
    )


def read_csv(path: str) -> list[dict[str, str]]:
    """Rows of a ``--csv`` file: a header with ``destination`` (and optionally goal, agent,
    caller_id); empty lines and lines starting with ``#`` are skipped."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            lines = [line for line in f if line.strip() and not line.lstrip().startswith("#")]
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=path) from exc
    reader = csv.DictReader(lines)
    fields = [name.strip() for name in reader.fieldnames or []]
    if "destination" not in fields:
        raise ConfigError("the CSV needs a header with a 'destination' column", file=path)
    unknown = set(fields) - {"destination", "goal", "agent", "caller_id"}
    if unknown:
        raise ConfigError(f"unknown CSV columns {sorted(unknown)}", file=path)
    rows = []
    for row in reader:
        clean = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if clean.get("destination"):
            rows.append(clean)
    if not rows:
        raise ConfigError("no destinations in the CSV", file=path)
    return rows


def run_cli(args: argparse.Namespace, config: Config) -> int:
    """Run ``agi-bridge call`` from parsed arguments; returns the exit code."""
    if args.record:
        config = dataclasses.replace(
            config,
            records=dataclasses.replace(config.records, enabled=True, dir=args.record, wav=True),
        )
    scenario = None
    if args.scenario:
        from agi_bridge.simulator import Scenario

        scenario = Scenario.from_yaml(args.scenario)
    live = sys.stderr if args.json else sys.stdout

    def printer(prefix: str = "") -> Printer:
        def show(line: str) -> None:
            if not args.quiet:
                print(f"{prefix}{line}", file=live, flush=True)

        return show

    variables: dict[str, str] = {}
    for item in args.var:
        try:
            key, value = parse_var(item)
        except ValueError as exc:
            raise ConfigError(str(exc), key="--var") from None
        variables[key] = value

    def runner(destination: str, row: dict[str, str], prefix: str = "") -> OutboundCall:
        goal = row.get("goal") or args.goal
        if not goal:
            raise ConfigError("a goal is needed (--goal, or a goal column with --csv)")
        return OutboundCall(
            config,
            destination,
            agent=row.get("agent") or args.agent,
            goal=goal,
            timeout_s=args.timeout,
            ring_timeout_s=args.ring_timeout,
            caller_id=row.get("caller_id") or args.caller_id,
            printer=printer(prefix),
            simulator_scenario=scenario,
            variables=variables,
            amd=args.amd or "",
            voicemail_message=args.voicemail_message,
        )

    if args.csv:
        if args.destination:
            raise ConfigError("give a destination or --csv, not both")
        if args.concurrency < 1:
            raise ConfigError("must be >= 1", key="--concurrency")
        rows = read_csv(args.csv)
        width = len(str(len(rows)))
        runners = []
        for i, row in enumerate(rows, start=1):
            try:
                runners.append(runner(row["destination"], row, f"[{i:>{width}}] "))
            except ConfigError as exc:
                raise ConfigError(f"row {i}: {exc}", file=args.csv) from None
    else:
        if not args.destination:
            raise ConfigError("a destination is needed (or --csv FILE)")
        runners = [runner(args.destination, {})]

    async def main() -> list[CallResult]:
        def interrupt() -> None:
            for r in runners:
                r.interrupt()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, interrupt)
        slots = asyncio.Semaphore(args.concurrency)

        async def one(r: OutboundCall) -> CallResult:
            async with slots:
                if r.interrupted:  # Ctrl-C while it waited for a slot
                    return r.skip("interrupted (Ctrl-C) before dialing")
                return await r.run()

        return list(await asyncio.gather(*(one(r) for r in runners)))

    results = asyncio.run(main())
    for result in results:
        if result.record_dir:
            with contextlib.suppress(OSError):
                Path(result.record_dir, "result.json").write_text(
                    json.dumps(result.to_json(), indent=2) + "\n"
                )
    if not args.csv:
        result = results[0]
        if args.json:
            print(json.dumps(result.to_json(), indent=2))
        else:
            print(format_result(result, transcript=args.quiet))
        return result.exit_code
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        print(format_batch(results))
    return 0 if all(r.outcome == "goal_achieved" for r in results) else 1


def format_batch(results: list[CallResult]) -> str:
    """One line per call of a ``--csv`` run, then the count per outcome."""
    lines = ["", f"Results ({len(results)} calls):"]
    width = max(len(r.destination) for r in results)
    for i, r in enumerate(results, start=1):
        lines.append(
            f"  {i:>3}  {r.destination:<{width}}  {r.outcome:<17} exit {r.exit_code:<3} "
            f"{r.duration_s:6.1f} s  digits {r.digits_sent or '-':<8} {r.detail}"
        )
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    lines.append("  " + ", ".join(f"{n} {OUTCOME_TEXT.get(o, o)}" for o, n in counts.items()))
    return "\n".join(lines)
