#!/bin/bash
# Build (or reuse from cache) a Debian sid chroot with Asterisk 22 for the e2e tests.
#
#   scripts/provision-asterisk-chroot.sh            # build or reuse; last stdout line = root path
#   scripts/provision-asterisk-chroot.sh --prune    # also delete cached roots of other hashes
#
# The root lives at $AGI_BRIDGE_CACHE/asterisk-root-<hash>, where <hash> covers
# asterisk-packages.txt and install-asterisk.sh; a stable symlink
# $AGI_BRIDGE_CACHE/asterisk-root points at the current one. A root is reused only when its
# marker file exists (written last), so a half-built root is deleted and rebuilt.
#
# Environment:
#   AGI_BRIDGE_CACHE          cache directory (default /var/cache/agi-bridge)
#   AGI_BRIDGE_DEBIAN_MIRROR  Debian mirror URI (default: read from this machine's apt sources)
#   AGI_BRIDGE_SUITE          Debian suite for the chroot (default sid)
#   AGI_BRIDGE_DEBOOTSTRAP_OPTS  extra debootstrap options (e.g. --keyring=FILE)
#
# SAFETY: the host's /dev is never bind-mounted into the root (debootstrap creates the few
# device nodes it needs). Nothing is mounted during the build. Before anything under a root
# is deleted, every mount below it (e.g. ROOT/proc left by the e2e harness) is unmounted,
# and deletion is refused if a mount is still live or a process still runs inside the root.
# This script never stops any process.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${AGI_BRIDGE_CACHE:-/var/cache/agi-bridge}
suite=${AGI_BRIDGE_SUITE:-sid}
prune=0
for arg in "$@"; do
    case $arg in
        --prune) prune=1 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "provision-asterisk-chroot.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

log() { echo "provision-asterisk-chroot: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and chroot need it)"
command -v debootstrap >/dev/null || die "debootstrap missing: run scripts/install-system-deps.sh"

pkg_list=$here/asterisk-packages.txt
installer=$here/install-asterisk.sh
hash=$(cat "$pkg_list" "$installer" | sha256sum | cut -c1-16)
root=$cache/asterisk-root-$hash
marker=$root/.agi-bridge-provisioned
link=$cache/asterisk-root

# --- safety helpers ---------------------------------------------------------------------

# Mount points at or below $1 (deepest first), from the kernel's own table.
mounts_under() {
    local dir=$1
    awk -v d="$dir" '{ mp = $5; gsub(/\\040/, " ", mp);
                       if (mp == d || index(mp, d "/") == 1) print length(mp) " " mp }' \
        /proc/self/mountinfo | sort -rn | cut -d' ' -f2-
}

# Pids whose root directory is $1 or below (processes running inside the chroot).
pids_inside() {
    local dir=$1 p r
    for p in /proc/[0-9]*; do
        r=$(readlink "$p/root" 2>/dev/null) || continue
        if [ "$r" = "$dir" ] || [ "${r#"$dir"/}" != "$r" ]; then echo "${p#/proc/}"; fi
    done
}

# Delete a cached root: refuse while a process runs in it, unmount everything below it,
# verify nothing is mounted, then delete without crossing file systems.
safe_remove_root() {
    local dir=$1 mp pids
    [ -e "$dir" ] || return 0
    case $dir in "$cache"/asterisk-root-*) ;; *) die "refusing to delete $dir (not a cached root)" ;; esac
    pids=$(pids_inside "$dir")
    [ -z "$pids" ] || die "processes still run inside $dir (pids: ${pids//$'\n'/ }); stop them first"
    while read -r mp; do
        [ -n "$mp" ] || continue
        log "unmounting $mp"
        umount "$mp" || die "cannot unmount $mp; not deleting $dir"
    done < <(mounts_under "$dir")
    [ -z "$(mounts_under "$dir")" ] || die "mounts remain under $dir; not deleting it"
    log "deleting $dir"
    rm -rf --one-file-system -- "$dir"
}

# The Debian mirror URI from apt's own configuration (deb822 .sources first, then .list).
debian_mirror() {
    if [ -n "${AGI_BRIDGE_DEBIAN_MIRROR:-}" ]; then echo "$AGI_BRIDGE_DEBIAN_MIRROR"; return; fi
    local f uri=
    shopt -s nullglob
    for f in /etc/apt/sources.list.d/*.sources; do
        # First URI of a "Types: deb" stanza that is not the security archive.
        uri=$(awk 'BEGIN { RS = ""; FS = "\n" }
                   { types = ""; uris = "";
                     for (i = 1; i <= NF; i++) {
                       if ($i ~ /^Types:/) types = $i;
                       if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) } }
                     if (types ~ /(^|[ \t])deb([ \t]|$)/ && uris != "") {
                       n = split(uris, u, /[ \t]+/);
                       for (j = 1; j <= n; j++) if (u[j] !~ /security/) { print u[j]; exit } } }' "$f")
        [ -z "$uri" ] || break
    done
    if [ -z "$uri" ]; then
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -r "$f" ] || continue
            uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) {
                                        if ($i !~ /security/) { print $i; exit } ; break } }' "$f")
            [ -z "$uri" ] || break
        done
    fi
    shopt -u nullglob
    [ -n "$uri" ] || die "no Debian mirror found in /etc/apt/sources.list{,.d}; set AGI_BRIDGE_DEBIAN_MIRROR"
    echo "${uri%/}"
}

# --- main -------------------------------------------------------------------------------

mkdir -p "$cache"
exec 9>"$cache/.provision.lock"
flock 9   # one provisioner at a time (parallel CI jobs on one machine)

if [ -f "$marker" ]; then
    log "reusing $root"
else
    start=$(date +%s)
    safe_remove_root "$root"     # a half-built root from an interrupted run
    mirror=$(debian_mirror)
    log "building $root (debootstrap $suite from $mirror)"
    # Extra debootstrap options, e.g. --keyring=FILE, via AGI_BRIDGE_DEBOOTSTRAP_OPTS.
    # shellcheck disable=SC2086
    debootstrap --variant=minbase ${AGI_BRIDGE_DEBOOTSTRAP_OPTS:-} "$suite" "$root" "$mirror" >&2 \
        || { log "debootstrap failed (see $root/debootstrap/debootstrap.log)"; exit 1; }

    # Chroot specifics stay here, not in install-asterisk.sh:
    # keep maintainer scripts from starting daemons, and give apt name resolution.
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    # sid's Release carries a Valid-Until date; mirrors that serve a frozen snapshot (as the
    # registry mirror of these machines does) make `apt-get update` fail with "is expired".
    # Accept such a Release in this throw-away test root only.
    printf 'Acquire::Check-Valid-Until "false";\n' > "$root/etc/apt/apt.conf.d/99agi-bridge-test-root"

    mkdir -p "$root/tmp/agi-bridge-install"
    cp "$installer" "$pkg_list" "$root/tmp/agi-bridge-install/"
    log "installing Asterisk packages inside the chroot"
    chroot "$root" /bin/sh /tmp/agi-bridge-install/install-asterisk.sh >&2
    rm -rf "$root/tmp/agi-bridge-install"

    # The package's default configuration is not used by the tests (they pass -C to a
    # per-test asterisk.conf); nothing else to adjust.
    [ -z "$(mounts_under "$root")" ] || die "unexpected mounts under $root after the build"
    date -u +%FT%TZ > "$marker"
    log "built $root in $(( $(date +%s) - start )) s"
fi

ln -sfn "$(basename "$root")" "$link.tmp" && mv -T "$link.tmp" "$link"

if [ "$prune" = 1 ]; then
    for old in "$cache"/asterisk-root-*; do
        if [ ! -d "$old" ] || [ -L "$old" ] || [ "$old" = "$root" ]; then continue; fi
        if [ -n "$(pids_inside "$old")" ]; then log "keeping $old (in use)"; continue; fi
        safe_remove_root "$old"
    done
fi

echo "$root"
