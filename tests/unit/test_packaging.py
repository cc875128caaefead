"""The wheel: what `pip install agi-bridge` gives a new user.

Built here from a copy of the source tree (pip wheel, the build backend of pyproject.toml,
as the Docker image's install does): it must carry the tested Asterisk configuration and
the example config byte for byte (`agi-bridge init` writes them out), the Apache-2.0
license as an SPDX expression plus the LICENSE file, and build without setuptools warnings.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "agi_bridge",
           "asterisk-config", "examples/agi-bridge.yaml"]  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[zipfile.ZipFile, str]:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path, dest = REPO / name, src / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, dest, ignore=shutil.ignore_patterns("__pycache__", "data"))
        else:
            shutil.copy2(path, dest)
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (built,) = out.glob("agi_bridge-*.whl")
    return zipfile.ZipFile(built), res.stdout + res.stderr


def test_the_wheel_carries_the_asterisk_config_and_the_example(
    wheel: tuple[zipfile.ZipFile, str],
) -> None:
    zf, _ = wheel
    names = set(zf.namelist())
    shipped = sorted(p.name for p in (REPO / "asterisk-config").iterdir() if p.is_file())
    assert "pjsip.conf" in shipped and "README.md" in shipped
    for name in shipped:
        member = f"agi_bridge/data/asterisk-config/{name}"
        assert member in names, member
        assert zf.read(member) == (REPO / "asterisk-config" / name).read_bytes(), name
    example = (REPO / "examples" / "agi-bridge.yaml").read_bytes()
    assert zf.read("agi_bridge/data/agi-bridge.yaml") == example


def test_license_is_an_spdx_expression_with_the_file(wheel: tuple[zipfile.ZipFile, str]) -> None:
    zf, _ = wheel
    (metadata,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
    lines = zf.read(metadata).decode().splitlines()
    assert "License-Expression: Apache-2.0" in lines
    assert "License-File: LICENSE" in lines
    (licence,) = [n for n in zf.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    text = zf.read(licence).decode()
    assert text == (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a pointer to it


def test_the_build_prints_no_setuptools_warning(wheel: tuple[zipfile.ZipFile, str]) -> None:
    _, output = wheel
    for marker in ("SetuptoolsDeprecationWarning", "BuildBackendWarning", "is deprecated",
                   "2027-Feb-18"):  # fmt: skip
        assert marker not in output, f"{marker!r} in the build output"
