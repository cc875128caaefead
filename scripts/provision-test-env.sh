#!/bin/sh
# Everything the e2e tests need on a fresh Debian bookworm machine (root):
# host packages, then the cached Asterisk 22 chroot. Both steps are idempotent and fast
# when nothing changed. Prints the chroot path on the last line.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
"$here/install-system-deps.sh" >&2
exec "$here/provision-asterisk-chroot.sh" "$@"
