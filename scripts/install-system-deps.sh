#!/bin/sh
# Install the host packages the tests need (Debian bookworm, as root). Idempotent: when every
# package is already installed it does not touch apt at all, so re-runs take milliseconds.
#
#   scripts/install-system-deps.sh
#
#   debootstrap    builds the Asterisk chroot (scripts/provision-asterisk-chroot.sh)
#   baresip-core   the softphone of the e2e tests (SIP/RTP, plays a wav, records what it hears)
#   espeak-ng sox  speech input for test calls (espeak-ng -> sox -r 8000 -c 1 -b 16)
#   tshark         captures RTP on lo to check RFC 4733 DTMF and packet pacing
#   sip-tester     sipp, for load tests
#   iproute2       ss/ip, to see which ports are bound when a test fails
#   procps         ps/pgrep (read-only use) for diagnostics
#   util-linux     mount/umount/flock used by the provisioning script, unshare for a test
#
# A fresh VM often runs apt for its first minutes (unattended-upgrades, cloud-init): this
# waits for apt's locks (APT_LOCK_WAIT seconds, default 600) instead of failing at once.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/apt.sh
. "$here/lib/apt.sh"

packages="debootstrap baresip-core espeak-ng sox tshark sip-tester iproute2 procps util-linux"

[ "$(id -u)" = 0 ] || { echo "install-system-deps.sh: run as root" >&2; exit 1; }

missing=
for p in $packages; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing="$missing $p"
done

if [ -z "$missing" ]; then
    echo "install-system-deps: all present ($packages)"
    exit 0
fi

echo "install-system-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt_wait_for_locks
# tshark's wireshark-common asks whether non-root users may capture; answer for it.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt_get update -q
# shellcheck disable=SC2086  # the list is meant to be split
apt_get install -y -q --no-install-recommends $missing
echo "install-system-deps: done"
