#!/bin/sh
# Install Asterisk (Debian packages listed in asterisk-packages.txt) into the *current* system.
#
# Used unchanged in two places, so the tested path is the shipped path:
#   * inside the Debian sid test chroot (scripts/provision-asterisk-chroot.sh copies it in);
#   * as a RUN step of the Asterisk image, e.g. on debian:sid-slim:
#         COPY scripts/install-asterisk.sh scripts/asterisk-packages.txt /tmp/agi-bridge/
#         RUN sh /tmp/agi-bridge/install-asterisk.sh && rm -rf /tmp/agi-bridge
#
# Usage: install-asterisk.sh [PACKAGE_LIST_FILE]   (default: asterisk-packages.txt next to it)
# Needs root and a Debian release that has asterisk (sid today; bookworm has none).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
list=${1:-$here/asterisk-packages.txt}
[ -r "$list" ] || { echo "install-asterisk.sh: cannot read package list $list" >&2; exit 1; }

# Strip comments and blank lines; one or more names a line.
pkgs=$(sed -e 's/#.*//' "$list" | tr -s ' \t\r\n' ' ' | sed -e 's/^ //' -e 's/ $//')
[ -n "$pkgs" ] || { echo "install-asterisk.sh: no packages in $list" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086  # word splitting of the package list is intended
apt-get install -y -q --no-install-recommends $pkgs
apt-get clean
rm -rf /var/lib/apt/lists/*

asterisk -V
