#!/bin/sh
# Entrypoint of the agi_bridge Asterisk image (docker/asterisk/Dockerfile).
#
# 1. AGI_BRIDGE_HOST (the bridge's FastAGI/AudioSocket host, read by the dialplan through
#    ${ENV(AGI_BRIDGE_HOST)}): a host name is resolved to an IPv4 address here, once, so
#    Asterisk never waits for DNS during a call (REFERENCE.md §1: a host name costs ~5 s
#    per call where DNS is unreachable). AGI_BRIDGE_RESOLVE_HOST=no keeps the name.
#    docker/compose.yaml restarts Asterisk when the bridge container is recreated, so the
#    address stays current.
# 2. /etc/asterisk is rendered from the tested files (render-config.sh: pjsip.conf and
#    manager.conf get container addresses appended; the AMI secret comes from
#    AGI_BRIDGE_AMI_SECRET or AGI_BRIDGE_AMI_SECRET_FILE).
# 3. Asterisk's run-time directories belong to the asterisk user (it runs with -U asterisk).
#
# AGI_BRIDGE_ASTERISK_ROOT (default empty) prefixes every path this script writes; the tests
# (tests/docker/test_asterisk_render.py) run it on a scratch directory.
set -eu

log() { echo "agi-bridge-asterisk: $*" >&2; }

config_src=${AGI_BRIDGE_ASTERISK_CONFIG:-/usr/share/agi-bridge/asterisk-config}
root=${AGI_BRIDGE_ASTERISK_ROOT:-}
etc=$root/etc/asterisk

host=${AGI_BRIDGE_HOST:-}
case $host in
    "" | *[!0-9.]*) is_ipv4=no ;;
    *) is_ipv4=yes ;;
esac
if [ -n "$host" ] && [ "$is_ipv4" = no ] && [ "${AGI_BRIDGE_RESOLVE_HOST:-yes}" = yes ]; then
    waited=0 limit=${AGI_BRIDGE_RESOLVE_TIMEOUT:-60} addr=
    while :; do
        addr=$(getent ahostsv4 "$host" 2>/dev/null | awk 'NR == 1 { print $1 }') || true
        if [ -n "$addr" ] || [ "$waited" -ge "$limit" ]; then break; fi
        [ "$waited" -gt 0 ] || log "waiting for $host to resolve (AGI_BRIDGE_HOST)"
        sleep 1
        waited=$((waited + 1))
    done
    if [ -n "$addr" ]; then
        log "AGI_BRIDGE_HOST $host -> $addr"
        AGI_BRIDGE_HOST=$addr
        export AGI_BRIDGE_HOST
    else
        log "WARNING: cannot resolve $host after ${limit} s; Asterisk will look it up per call"
    fi
fi

# Only the files rendered from the tested configuration live in /etc/asterisk.
mkdir -p "$etc"
find "$etc" -maxdepth 1 -type f -name '*.conf' -delete
agi-bridge-render-asterisk-config "$config_src" "$etc"

for dir in /var/run/asterisk /var/log/asterisk /var/spool/asterisk /var/lib/asterisk /var/cache/asterisk; do
    mkdir -p "$root$dir"
    chown asterisk:asterisk "$root$dir"
done

exec "$@"
