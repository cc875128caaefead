#!/bin/sh
# Install agi_bridge from a source tree into a new virtual environment.
#
#   install-bridge.sh VENV SRC        (PYTHON: the interpreter, default python3)
#
# The one install step of the bridge image (docker/bridge/Dockerfile runs it), and what
# tests/docker/test_bridge_install.py runs in a fresh virtualenv on every `make test`, so
# the image's install step is exercised by CI even where no image can be built.
set -eu
[ $# -eq 2 ] || { echo "usage: install-bridge.sh VENV SRC" >&2; exit 2; }
venv=$1
src=$2
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check "$src"
"$venv/bin/agi-bridge" --version
