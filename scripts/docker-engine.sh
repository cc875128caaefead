#!/bin/bash
# A Docker engine for the tests (and for anyone on Debian bookworm without one), as root.
#
#   scripts/docker-engine.sh install   Debian's docker.io (engine 20.10, containerd, runc,
#                                      iptables) and the Compose v2 and buildx CLI plugins
#   scripts/docker-engine.sh start     install, then start dockerd (default flags) unless a
#                                      Docker engine already answers; remembers that it did
#   scripts/docker-engine.sh stop      stop the dockerd that `start` started and undo its
#                                      network changes (docker0 and br-* bridges, iptables
#                                      rules and chains, ip_forward); an engine this script
#                                      did not start is left alone
#   scripts/docker-engine.sh status    prints "ours PID", "running" (someone else's) or "stopped"
#
# Compose v2 and buildx are not packaged for bookworm. The docker-compose and docker-buildx
# packages of the next Debian release (AGI_BRIDGE_PLUGIN_SUITE, default trixie) hold static
# CLI plugins that work with this engine: they are fetched with apt from this machine's own
# Debian mirror (a temporary source list; the host's apt sources are not changed), cached in
# $AGI_BRIDGE_CACHE/docker-plugins-<hash>, and unpacked into $PLUGIN_DIR.
#
# Environment:
#   AGI_BRIDGE_CACHE          cache directory (default /var/cache/agi-bridge)
#   AGI_BRIDGE_DEBIAN_MIRROR  Debian mirror URI (default: from this machine's apt sources)
#   AGI_BRIDGE_PLUGIN_SUITE   Debian suite of the plugin packages (default trixie)
#   AGI_BRIDGE_DOCKER_STATE   where `start` records what it did (default /run/agi-bridge-docker)
#   APT_LOCK_WAIT             seconds to wait for a busy apt (default 600)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/apt.sh
. "$here/lib/apt.sh"

cache=${AGI_BRIDGE_CACHE:-/var/cache/agi-bridge}
state=${AGI_BRIDGE_DOCKER_STATE:-/run/agi-bridge-docker}
plugin_suite=${AGI_BRIDGE_PLUGIN_SUITE:-trixie}
plugin_packages="docker-compose docker-buildx"
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins # searched by every docker CLI since 19.03
engine_packages="docker.io iptables"
tables="filter nat mangle raw"

log() { echo "docker-engine: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts dockerd)"

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]; }

install_engine() {
    local p missing=
    for p in $engine_packages; do installed "$p" || missing="$missing $p"; done
    [ -n "$missing" ] || return 0
    log "installing$missing"
    apt_get update -q >&2
    # shellcheck disable=SC2086
    apt_get install -y -q --no-install-recommends $missing >&2
}

# The plugin .debs of $plugin_suite, downloaded once into the cache.
fetch_plugins() {
    local key dir mirror tmp
    key=$(printf '%s %s\n' "$plugin_suite" "$plugin_packages" | sha256sum | cut -c1-16)
    dir=$cache/docker-plugins-$key
    if [ -f "$dir/.complete" ]; then echo "$dir"; return 0; fi
    mirror=$(debian_mirror)
    tmp=$(mktemp -d)
    log "downloading $plugin_packages from $mirror $plugin_suite"
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs"
    cat > "$tmp/plugins.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $plugin_suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # A private apt state: only this source, its own lists and cache; nothing of the host's
    # apt configuration changes. Check-Valid-Until: a mirror may serve a frozen snapshot.
    local opts=(-q -o "Dir::Etc::SourceList=$tmp/plugins.sources" -o "Dir::Etc::SourceParts=$tmp/none"
        -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache"
        -o Acquire::Check-Valid-Until=false -o APT::Get::List-Cleanup=false
        -o APT::Sandbox::User=root)
    apt-get "${opts[@]}" update >&2
    # shellcheck disable=SC2086
    (cd "$tmp/debs" && apt-get "${opts[@]}" download $plugin_packages >&2)
    mkdir -p "$cache"
    rm -rf "$dir"
    mv "$tmp/debs" "$dir"
    rm -rf "$tmp"
    touch "$dir/.complete"
    echo "$dir"
}

install_plugins() {
    local dir deb tmp name
    if docker compose version >/dev/null 2>&1 && docker buildx version >/dev/null 2>&1; then
        return 0
    fi
    dir=$(fetch_plugins)
    tmp=$(mktemp -d)
    for deb in "$dir"/*.deb; do dpkg-deb -x "$deb" "$tmp"; done
    mkdir -p "$PLUGIN_DIR"
    for name in docker-compose docker-buildx; do
        [ -x "$tmp/usr/libexec/docker/cli-plugins/$name" ] || die "no $name plugin in $dir"
        install -m 0755 "$tmp/usr/libexec/docker/cli-plugins/$name" "$PLUGIN_DIR/$name"
    done
    rm -rf "$tmp"
    log "plugins: $(docker compose version), $(docker buildx version)"
}

engine_answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

our_pid() {
    local pid
    [ -f "$state/dockerd.pid" ] || return 1
    pid=$(cat "$state/dockerd.pid")
    [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || return 1
    echo "$pid"
}

links() { ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort; }

snapshot_network() {
    local cmd t
    links > "$state/links.before"
    cat /proc/sys/net/ipv4/ip_forward > "$state/ip_forward.before"
    for cmd in iptables ip6tables; do
        for t in $tables; do
            "$cmd" -t "$t" -S > "$state/$cmd-$t.before" 2>/dev/null || rm -f "$state/$cmd-$t.before"
        done
    done
}

# Undo what dockerd added: rules (newest first), then its chains, then the old policies.
restore_iptables() {
    local cmd=$1 t before now line chain policy
    for t in $tables; do
        before=$state/$cmd-$t.before
        [ -f "$before" ] || continue
        now=$("$cmd" -t "$t" -S 2>/dev/null) || continue
        while read -r line; do
            [ -n "$line" ] || continue
            eval "\"\$cmd\" -t \"\$t\" -D ${line#-A }" || log "could not delete $cmd -t $t $line"
        done < <(grep '^-A ' <<< "$now" | grep -vxF -f "$before" | tac || true)
        while read -r line; do
            [ -n "$line" ] || continue
            "$cmd" -t "$t" -F "${line#-N }" && "$cmd" -t "$t" -X "${line#-N }" \
                || log "could not remove chain ${line#-N } of $cmd -t $t"
        done < <(grep '^-N ' <<< "$now" | grep -vxF -f "$before" || true)
        while read -r _ chain policy; do
            "$cmd" -t "$t" -P "$chain" "$policy" || true
        done < <(grep '^-P ' "$before" || true)
    done
}

restore_network() {
    local link
    while read -r link; do
        case $link in
            docker0 | br-* | veth*) ip link delete "$link" 2>/dev/null && log "removed interface $link" ;;
        esac
    done < <(comm -13 "$state/links.before" <(links))
    restore_iptables iptables
    restore_iptables ip6tables
    cat "$state/ip_forward.before" > /proc/sys/net/ipv4/ip_forward
}

start() {
    install_engine
    install_plugins
    if pid=$(our_pid); then log "dockerd $pid (started by this script) is running"; return 0; fi
    if engine_answers; then
        log "a Docker engine is already running; using it and leaving it alone"
        return 0
    fi
    [ ! -S /var/run/docker.sock ] || [ ! -f /var/run/docker.pid ] \
        || [ ! -d "/proc/$(cat /var/run/docker.pid)" ] \
        || die "dockerd $(cat /var/run/docker.pid) runs but does not answer; look at it first"
    mkdir -p "$state"
    rm -f "$state"/*
    snapshot_network
    log "starting dockerd (log: $state/dockerd.log)"
    setsid dockerd > "$state/dockerd.log" 2>&1 < /dev/null &
    echo $! > "$state/dockerd.pid"
    local waited=0
    until engine_answers; do
        if [ ! -d "/proc/$(cat "$state/dockerd.pid")" ]; then
            tail -20 "$state/dockerd.log" >&2
            restore_network
            rm -f "$state/dockerd.pid"
            die "dockerd exited at start (above: the end of its log)"
        fi
        [ "$waited" -lt 60 ] || die "dockerd does not answer after 60 s (see $state/dockerd.log)"
        sleep 1
        waited=$((waited + 1))
    done
    log "dockerd $(cat "$state/dockerd.pid") is up (engine $(docker version --format '{{.Server.Version}}'))"
}

stop() {
    local pid waited=0
    if ! pid=$(our_pid); then
        if [ -f "$state/links.before" ]; then
            log "the dockerd this script started is gone; undoing its network changes"
            restore_network
            rm -rf "$state"
        else
            log "no dockerd started by this script; nothing to stop"
        fi
        return 0
    fi
    log "stopping dockerd $pid"
    kill -TERM "$pid"
    while [ -d "/proc/$pid" ]; do
        if [ "$waited" -ge 60 ]; then
            log "dockerd $pid still runs after 60 s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
            break
        fi
        sleep 1
        waited=$((waited + 1))
    done
    restore_network
    rm -rf "$state"
    log "dockerd stopped; network as before"
}

case ${1:-} in
    install) install_engine; install_plugins ;;
    start) start ;;
    stop) stop ;;
    status)
        if pid=$(our_pid); then echo "ours $pid"
        elif engine_answers; then echo running
        else echo stopped; fi ;;
    *) sed -n '2,25p' "$0" >&2; exit 2 ;;
esac
