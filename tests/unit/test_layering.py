"""The sans-I/O rule (ARCHITECTURE): protocol/, audio.py and playout.py do no I/O.

They must not import asyncio, sockets or websockets, nor reach up into the layers that do
(call, realtime client, asterisk adapters, app, cli). Checked on the source with ``ast``,
so an import hidden inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import agi_bridge

PACKAGE = Path(agi_bridge.__file__).resolve().parent
SANS_IO = [
    *sorted((PACKAGE / "protocol").glob("*.py")),
    PACKAGE / "audio.py",
    PACKAGE / "playout.py",
    PACKAGE / "digits.py",
    PACKAGE / "keypress_quiet.py",
    PACKAGE / "prompt_context.py",
]

# top-level modules whose presence means I/O or an event loop
FORBIDDEN = {"asyncio", "socket", "websockets", "selectors", "trio", "anyio"}
# what a sans-I/O module may import from the package itself
# (agi_bridge.models: model names and dated tables, pure data)
ALLOWED_INTERNAL = (
    "agi_bridge.errors",
    "agi_bridge.audio",
    "agi_bridge.protocol",
    "agi_bridge.models",
)


def imported_modules(source: str, module: str) -> set[str]:
    """Absolute names of every module imported anywhere in ``source``."""
    package = module.rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
                names.add(target)
                if not node.module:
                    names.update(f"{base}.{alias.name}" for alias in node.names)
            elif node.module:
                names.add(node.module)
                # "from agi_bridge import call" imports the submodule agi_bridge.call
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts)


def _internal_ok(name: str) -> bool:
    # "from agi_bridge.audio import FRAME_MS" also records agi_bridge.audio.FRAME_MS
    candidates = (name, name.rsplit(".", 1)[0])
    return any(c == a or c.startswith(a + ".") for c in candidates for a in ALLOWED_INTERNAL)


def violations(source: str, module: str) -> list[str]:
    found = []
    for name in sorted(imported_modules(source, module)):
        top = name.split(".")[0]
        if top in FORBIDDEN:
            found.append(f"{module} imports {name} (I/O)")
        elif top == "agi_bridge" and name != "agi_bridge" and not _internal_ok(name):
            found.append(f"{module} imports {name} (upper layer)")
    return found


def test_the_sans_io_modules_exist() -> None:
    names = {module_name(p) for p in SANS_IO}
    assert {
        "agi_bridge.protocol.audiosocket",
        "agi_bridge.protocol.realtime",
        "agi_bridge.protocol.agi",
        "agi_bridge.audio",
        "agi_bridge.playout",
    } <= names


@pytest.mark.parametrize("path", SANS_IO, ids=lambda p: module_name(p))
def test_sans_io_module_does_no_io(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert violations(source, module_name(path)) == []


# The checker itself must catch every spelling, or the test above proves nothing.
@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import asyncio.events",
        "import socket as s",
        "from asyncio import sleep",
        "from websockets.asyncio.client import connect",
        "import os, socket",
        "def f():\n    import asyncio\n",
        "try:\n    import trio\nexcept ImportError:\n    pass\n",
        "from agi_bridge import call",
        "from agi_bridge.realtime import RealtimeConnection",
        "from agi_bridge.asterisk import audiosocket",
        "from .. import realtime",
        "from ..asterisk.ami import Ami",
    ],
)
def test_checker_catches_forbidden_imports(source: str) -> None:
    assert violations(source, "agi_bridge.protocol.example")


@pytest.mark.parametrize(
    "source",
    [
        "import struct\nimport base64",
        "from agi_bridge.errors import AudioSocketError",
        "from agi_bridge.audio import FRAME_MS, SAMPLE_RATE",
        "from agi_bridge.protocol.realtime import VOICES",
        "from . import audiosocket",
        "from .realtime import VOICES",
        "from ..errors import AgiError",
        "from ..audio import FRAME_MS",
        "import asyncio_helpers_not_really",
    ],
)
def test_checker_allows_pure_imports(source: str) -> None:
    assert violations(source, "agi_bridge.protocol.example") == []


# ------------------------------------------------------------------ the layer contract
# Lowest first. A module may import modules of its own layer and of the layers below,
# never above (ARCHITECTURE: cli -> app -> {transports, observers} -> call -> floor).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "floor",
        (
            "errors",
            "samples",
            "audio",
            "playout",
            "protocol",
            "models",
            "digits",
            "keypress_quiet",
            "prompt_context",
            "libc",
        ),
    ),
    ("config", ("config",)),
    ("seams", ("call.ports", "call.stats", "call.events", "providers.base")),
    (
        "conversation",
        (
            "tools",
            "webhook",
            "lookup",
            "collect_digits",
            "call.session",
            "call.responses",
            "call.dtmf",
            "call.conversation",
            "silent_caller",
        ),
    ),
    (
        "call",
        (
            "call",
            "ticker",
            "timerfd",
            "providers",
            "realtime",
            "live_connection",
            "asterisk",
            "simulator",
            "virtual_caller",
        ),
    ),
    (
        "edges",
        (
            "transports",
            "records",
            "metrics",
            "monitoring",
            "realtime_health",
            "admin",
            "heap_return",
        ),
    ),
    ("app", ("app",)),
    (
        "commands",
        ("check", "outbound", "ivrtest", "cli", "__main__", "eventloop", "workers", "front"),
    ),
]
# Observers see a call through call.events only; transports implement call.ports only.
NARROW: dict[tuple[str, ...], tuple[str, ...]] = {
    ("records", "metrics", "monitoring", "realtime_health", "admin"): (
        "call.events",
        "call.ports",
        "call.stats",
    ),
    ("transports",): ("call.ports",),
}
SHARED_TRANSPORT_HELPERS = ("inbox", "common")
# Sans-I/O beyond the floor: the conversation rules and the seams do no I/O either.
SANS_IO_CORE = (
    "call.ports",
    "call.stats",
    "call.events",
    "call.session",
    "call.conversation",
    "providers.base",
)


def _rel(name: str) -> str:
    return name.removeprefix("agi_bridge.").removeprefix("agi_bridge")


def _matches(rel: str, prefix: str) -> bool:
    return rel == prefix or rel.startswith(prefix + ".")


def layer_of(rel: str) -> int:
    """Index in LAYERS of the most specific prefix matching ``rel``."""
    best, best_len = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if _matches(rel, prefix) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    return best


def contract_violations(source: str, module: str) -> list[str]:
    me = _rel(module)
    mine = layer_of(me)
    found = []
    imported = imported_modules(source, module)
    for name in sorted(imported):
        if not name.startswith("agi_bridge.") or layer_of(_rel(name)) < 0:
            continue  # outside the package, or "from agi_bridge.x import SomeName"
        other = _rel(name)
        if PACKAGE.joinpath(*other.split(".")).is_dir() and any(
            n.startswith(name + ".") for n in imported
        ):
            continue  # "from agi_bridge.providers import base": the submodule is checked

        theirs = layer_of(other)
        if theirs > mine:
            found.append(f"{me} ({LAYERS[mine][0]}) imports {other} ({LAYERS[theirs][0]})")
        for owners, allowed in NARROW.items():
            narrowed = any(_matches(me, o) for o in owners) and _matches(other, "call")
            if narrowed and not any(_matches(other, a) for a in allowed):
                found.append(f"{me} reaches into {other} (only {', '.join(allowed)})")
        if _matches(me, "transports") and _matches(other, "transports"):
            # one transport may span modules of one family (ari, ari_rtp, ari_websocket)
            # and use the shared helpers; it never uses another transport's modules
            mine_t, theirs_t = me.split(".")[1:2], other.split(".")[1:2]
            shared = not theirs_t or theirs_t[0] in SHARED_TRANSPORT_HELPERS
            if not shared and mine_t and mine_t[0].split("_")[0] != theirs_t[0].split("_")[0]:
                found.append(f"{me} imports another transport {other}")
    return found


ALL_MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    missing = [module_name(p) for p in ALL_MODULES if layer_of(_rel(module_name(p))) < 0]
    assert [m for m in missing if not m.endswith("__init__") or m.count(".") > 1] == []


@pytest.mark.parametrize("path", ALL_MODULES, ids=lambda p: module_name(p))
def test_layer_contract(path: Path) -> None:
    assert contract_violations(path.read_text(encoding="utf-8"), module_name(path)) == []


@pytest.mark.parametrize("rel", SANS_IO_CORE)
def test_conversation_core_does_no_io(rel: str) -> None:
    path = PACKAGE.joinpath(*rel.split(".")).with_suffix(".py")
    names = imported_modules(path.read_text(encoding="utf-8"), f"agi_bridge.{rel}")
    assert sorted(n for n in names if n.split(".")[0] in FORBIDDEN) == []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("agi_bridge.call.conversation", "from agi_bridge.transports import audiosocket"),
        ("agi_bridge.call.call", "from agi_bridge.app import Bridge"),
        ("agi_bridge.records", "from agi_bridge.call.call import Call"),
        ("agi_bridge.admin", "from agi_bridge.app import Bridge"),
        ("agi_bridge.monitoring", "from agi_bridge import app"),
        ("agi_bridge.transports.ari_rtp", "from agi_bridge.transports.audiosocket import X"),
        ("agi_bridge.transports.audiosocket", "from agi_bridge.call.conversation import C"),
        ("agi_bridge.protocol.rtp", "from agi_bridge.config import Config"),
        ("agi_bridge.app", "from agi_bridge import cli"),
    ],
)
def test_contract_catches_wrong_way_imports(module: str, source: str) -> None:
    assert contract_violations(source, module)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("agi_bridge.call.call", "from agi_bridge.call.conversation import Conversation"),
        ("agi_bridge.records", "from agi_bridge.call.events import CallView"),
        ("agi_bridge.transports.ari_rtp", "from agi_bridge.call.ports import MediaPort"),
        ("agi_bridge.app", "from agi_bridge.transports import audiosocket"),
        ("agi_bridge.cli", "from agi_bridge.app import Bridge"),
    ],
)
def test_contract_allows_right_way_imports(module: str, source: str) -> None:
    assert contract_violations(source, module) == []


def test_no_module_over_500_lines() -> None:
    long = {
        module_name(p): n
        for p in ALL_MODULES
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert long == {}
