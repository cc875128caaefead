#!/bin/bash
# CI only: make the base images the shipped Dockerfiles start FROM, without a registry.
#
#   scripts/docker-base-images.sh        (root; the Docker engine must be running)
#
# The machines CI runs on cannot reach Docker Hub, so the official images are replaced by
# local look-alikes with the same tags:
#   debian:bookworm-slim        debootstrap --variant=minbase bookworm + docker import
#   debian:sid-slim             debootstrap --variant=minbase sid + docker import
#   python:3.11-slim-bookworm   Debian bookworm's Python 3.11 on the image above
#                               (scripts/docker-base-images/python.Dockerfile)
# from this machine's Debian mirror (apt sources). The python image also gets the host's CA
# bundle so pip reaches PyPI where TLS is inspected; the shipped Dockerfiles never do.
#
# An image of one of these tags that this script did not make (no label
# org.agi-bridge.ci-base), e.g. the real one pulled from Docker Hub, is left alone.
# Each debootstrapped root file system is cached as a tar file in
# $AGI_BRIDGE_CACHE/docker-base-<suite>-<hash>.tar (<hash> covers this script, the suite
# and the mirror), so a second run on a fresh engine only imports it.
#
# Environment: AGI_BRIDGE_CACHE (default /var/cache/agi-bridge), AGI_BRIDGE_DEBIAN_MIRROR.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/apt.sh
. "$here/lib/apt.sh"
cache=${AGI_BRIDGE_CACHE:-/var/cache/agi-bridge}
label=org.agi-bridge.ci-base
python_dockerfile=$here/docker-base-images/python.Dockerfile
host_ca=${AGI_BRIDGE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

log() { echo "docker-base-images: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap missing: run scripts/install-system-deps.sh"
docker version >/dev/null 2>&1 || die "no Docker engine answers: scripts/docker-engine.sh start"
mirror=$(debian_mirror)

# "ours KEY", "foreign" (exists, not made here) or "" (absent)
image_state() {
    local value
    value=$(docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null) \
        || return 0
    if [ -n "$value" ] && [ "$value" != "<no value>" ]; then echo "ours $value"; else echo foreign; fi
}

# Is $1 to be (re)made for key $2? Logs why not.
wanted() {
    local current
    current=$(image_state "$1")
    case $current in
        "ours $2") log "$1 is current"; return 1 ;;
        foreign) log "keeping $1 (not made by this script: an official image?)"; return 1 ;;
    esac
    return 0
}

debian_image() {
    local tag=$1 suite=$2 key tar root
    key=$(cat "$0" | sha256sum | cut -c1-8)-$(printf '%s %s' "$suite" "$mirror" | sha256sum | cut -c1-8)
    wanted "$tag" "$key" || return 0
    tar=$cache/docker-base-$suite-$key.tar
    if [ ! -f "$tar" ]; then
        root=$(mktemp -d "$cache/.docker-base-$suite.XXXXXX")
        log "debootstrap $suite from $mirror (minbase)"
        debootstrap --variant=minbase "$suite" "$root" "$mirror" > "$root.log" 2>&1 \
            || { tail -20 "$root.log" >&2; die "debootstrap $suite failed (log: $root.log)"; }
        ! grep -q " $root" /proc/self/mounts || die "mounts left under $root"
        # Like the official images: apt sources in deb822 form, no package lists or .debs.
        rm -f "$root/etc/apt/sources.list"
        printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
            "$mirror" "$suite" /usr/share/keyrings/debian-archive-keyring.gpg \
            > "$root/etc/apt/sources.list.d/debian.sources"
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root/debootstrap"
        tar -C "$root" --numeric-owner -cf "$tar.tmp" .
        mv "$tar.tmp" "$tar"
        rm -rf --one-file-system -- "$root" "$root.log"
    fi
    log "importing $tar as $tag"
    docker import --change "LABEL $label=$key" --change 'CMD ["bash"]' "$tar" "$tag" >/dev/null
}

python_image() {
    local tag=$1 base=$2 key ctx
    key=$( (cat "$python_dockerfile" "$host_ca"; docker image inspect --format '{{.Id}}' "$base") \
        | sha256sum | cut -c1-16)
    wanted "$tag" "$key" || return 0
    ctx=$(mktemp -d)
    cp "$python_dockerfile" "$ctx/Dockerfile"
    cp "$host_ca" "$ctx/host-ca-bundle.crt"
    log "building $tag on $base"
    DOCKER_BUILDKIT=1 docker build -q --label "$label=$key" -t "$tag" "$ctx" >/dev/null
    rm -rf "$ctx"
}

mkdir -p "$cache"
exec 9>"$cache/.docker-base.lock"
flock 9
start=$(date +%s)
debian_image debian:bookworm-slim bookworm
debian_image debian:sid-slim sid
python_image python:3.11-slim-bookworm debian:bookworm-slim
log "base images ready in $(( $(date +%s) - start )) s"
