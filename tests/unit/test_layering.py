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
ALLOWED_INTERNAL = ("agi_bridge.errors", "agi_bridge.audio", "agi_bridge.protocol")


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
