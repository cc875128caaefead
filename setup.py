"""Build hook: ship the repository's asterisk-config/ and examples/agi-bridge.yaml in the
wheel, as agi_bridge/data/ (read by ``agi-bridge init``).

The repository files stay the one source of truth (the e2e tests, the Docker image and the
Makefile use them where they are); this copies them into the build directory only, so a
wheel always carries the files of the tree it was built from. Everything else about the
package is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# (source in the repository, destination under agi_bridge/)
DATA = [
    ("asterisk-config", "data/asterisk-config"),
    ("examples/agi-bridge.yaml", "data/agi-bridge.yaml"),
]


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the repository's files in place
            return
        package = Path(self.build_lib) / "agi_bridge"
        for source, dest in DATA:
            src = HERE / source
            if not src.exists():
                raise SystemExit(f"setup.py: {src} is missing; the wheel must carry it")
            target = package / dest
            if src.is_dir():
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)


setup(cmdclass={"build_py": BuildPyWithData})
