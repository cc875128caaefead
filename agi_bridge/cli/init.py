"""``agi-bridge init DIR``: write the tested Asterisk configuration and the example config.

The files ship inside the package (``agi_bridge/data``, copied from the repository's
``asterisk-config/`` and ``examples/agi-bridge.yaml`` when the wheel is built, see
setup.py), so ``pip install agi-bridge`` is enough to start. From a source checkout (an
editable install has no ``data`` directory) the repository's own files are used.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import agi_bridge
from agi_bridge.errors import ConfigError

ASTERISK_DIR = "asterisk-config"
EXAMPLE_CONFIG = "agi-bridge.yaml"


def data_sources() -> tuple[Traversable, Traversable]:
    """(the asterisk-config directory, the example YAML file) this installation carries."""
    packaged = resources.files(agi_bridge) / "data"
    if (packaged / ASTERISK_DIR).is_dir() and (packaged / EXAMPLE_CONFIG).is_file():
        return packaged / ASTERISK_DIR, packaged / EXAMPLE_CONFIG
    checkout = Path(agi_bridge.__file__).resolve().parents[1]
    if (checkout / ASTERISK_DIR).is_dir() and (checkout / "examples" / EXAMPLE_CONFIG).is_file():
        return checkout / ASTERISK_DIR, checkout / "examples" / EXAMPLE_CONFIG
    raise ConfigError(
        "this installation carries no asterisk-config/ (agi_bridge/data is missing); "
        "reinstall agi-bridge from a wheel or a complete source tree"
    )


def planned_files(target: Path) -> list[tuple[Traversable, Path]]:
    """(source, destination) of every file ``init`` writes under ``target``."""
    asterisk, example = data_sources()
    out = [(example, target / EXAMPLE_CONFIG)]
    for item in sorted(asterisk.iterdir(), key=lambda t: t.name):
        if item.is_file() and (item.name.endswith(".conf") or item.name == "README.md"):
            out.append((item, target / ASTERISK_DIR / item.name))
    return out


def run_init(directory: str, force: bool) -> int:
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"init {directory}: exists and is not a directory")
    files = planned_files(target)
    existing = [str(dest) for _, dest in files if dest.exists()]
    if existing and not force:
        raise ConfigError(
            f"init {directory}: {len(existing)} file(s) exist already (e.g. {existing[0]}); "
            "nothing written. Use --force to overwrite them"
        )
    for source, dest in files:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(source.read_bytes())
    conf_count = len(files) - 1
    print(f"wrote {target / EXAMPLE_CONFIG} (the bridge's config: every key, with defaults)")
    print(f"wrote {target / ASTERISK_DIR}/ ({conf_count} files: Asterisk 22 configuration)")
    print(
        "next: copy asterisk-config/*.conf to /etc/asterisk (or include the parts you need, "
        f"see {target / ASTERISK_DIR / 'README.md'}), set AGI_BRIDGE_AMI_SECRET, then run\n"
        f"      agi-bridge serve -c {target / EXAMPLE_CONFIG}"
    )
    return 0
