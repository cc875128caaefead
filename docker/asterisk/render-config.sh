#!/bin/sh
# Render Asterisk's configuration for a container from the tested asterisk-config/ files.
#
#   render-config.sh SRC DEST
#
# SRC holds the tested files (the image has them in /usr/share/agi-bridge/asterisk-config;
# docker/compose.yaml mounts the repository's asterisk-config/ there). Every SRC/*.conf is
# copied to DEST unchanged, except pjsip.conf and manager.conf, which become small wrappers:
#
#     #include "SRC/pjsip.conf"          ; the tested file, unchanged
#     [transport-udp](+)                 ; then appended keys: the last value of a key wins
#     bind = 0.0.0.0:5060
#     ...
#
# (verified on Asterisk 22.10.1 by tests/docker/test_stack_without_docker.py). Only
# loopback addresses of the tested files are replaced; everything else is kept.
#
# Environment (all optional):
#   AGI_BRIDGE_ASTERISK_OVERRIDES  "no": copy every file unchanged (e.g. network_mode: host)
#   AST_BIND_ADDRESS               replaces 127.x in transport binds (default 0.0.0.0)
#   AST_MEDIA_ADDRESS              replaces an endpoint's 127.x media_address (default empty:
#                                  the address of the interface; RTP binds to all addresses)
#   AST_EXTERNAL_ADDRESS           the address phones outside the container network use to
#                                  reach Asterisk (NAT): sets external_media_address and
#                                  external_signaling_address of the transports
#   AST_EXTERNAL_MEDIA_ADDRESS     ... or each of them on its own
#   AST_EXTERNAL_SIGNALING_ADDRESS
#   AST_LOCAL_NET                  networks that are not behind the NAT (CIDR, space or comma
#                                  separated; default: this container's networks; "none")
#   AST_EXTERNAL_SIGNALING_PORT    the SIP port phones outside reach (the published host port;
#                                  used only with an external signaling address)
#   AST_RTP_START, AST_RTP_END     the RTP port range (rtp.conf's rtpstart/rtpend; compose
#                                  publishes the same range on the host)
#   AST_AMI_BIND_ADDRESS           replaces 127.x in manager.conf bindaddr (default 0.0.0.0)
#   AST_AMI_PERMIT                 networks allowed to log in to AMI, in addition to the
#                                  tested file's 127.0.0.1 (default: this container's networks)
#   AGI_BRIDGE_AMI_SECRET          the AMI secret, written to manager_agi_bridge_secret.conf
#   AGI_BRIDGE_AMI_SECRET_FILE     ... or read from this file (e.g. /run/secrets/ami_secret)
#   AGI_BRIDGE_ARI_PASSWORD        the ARI password, written to ari_agi_bridge_password.conf
#   AGI_BRIDGE_ARI_PASSWORD_FILE   ... or read from this file
#   AGI_BRIDGE_PROC_NET_ROUTE      routing table to read the networks from (default
#                                  /proc/net/route; the tests pass a fixture)
set -eu

log() { echo "render-config: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ $# -eq 2 ] || die "usage: render-config.sh SRC DEST"
src=$(cd "$1" && pwd) || die "no directory $1"
dest=$2
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
[ "$src" != "$dest" ] || die "SRC and DEST are the same directory"
ls "$src"/*.conf >/dev/null 2>&1 || die "no .conf files in $src"

overrides=${AGI_BRIDGE_ASTERISK_OVERRIDES:-yes}
bind_address=${AST_BIND_ADDRESS:-0.0.0.0}
media_address=${AST_MEDIA_ADDRESS:-}
external_media=${AST_EXTERNAL_MEDIA_ADDRESS:-${AST_EXTERNAL_ADDRESS:-}}
external_signaling=${AST_EXTERNAL_SIGNALING_ADDRESS:-${AST_EXTERNAL_ADDRESS:-}}
ami_bind=${AST_AMI_BIND_ADDRESS:-0.0.0.0}
external_signaling_port=${AST_EXTERNAL_SIGNALING_PORT:-}
rtp_start=${AST_RTP_START:-}
rtp_end=${AST_RTP_END:-}
route_table=${AGI_BRIDGE_PROC_NET_ROUTE:-/proc/net/route}

# The IPv4 networks this container is attached to (directly connected routes), as CIDR.
container_networks() {
    [ -r "$route_table" ] || return 0
    awk '
        function hex(h,   i, d) {
            d = 0; h = toupper(h)
            for (i = 1; i <= length(h); i++) d = d * 16 + index("0123456789ABCDEF", substr(h, i, 1)) - 1
            return d
        }
        function addr(h) {   # /proc/net/route: little-endian hex
            return hex(substr(h, 7, 2)) "." hex(substr(h, 5, 2)) "." hex(substr(h, 3, 2)) "." hex(substr(h, 1, 2))
        }
        function bits(h,   n, b) { n = hex(h); b = 0; while (n > 0) { b += n % 2; n = int(n / 2) }; return b }
        NR > 1 && $1 != "lo" && $2 != "00000000" && $3 == "00000000" { print addr($2) "/" bits($8) }
    ' "$route_table" | sort -u | tr '\n' ' ' | sed -e 's/ *$//'
}

# A list given as "a,b c" -> "a b c"; "none" -> "".
words() { [ "$1" = none ] && return 0; echo "$1" | tr ',' ' '; }

is_loopback() { case $1 in 127.*) return 0 ;; *) return 1 ;; esac; }

# Sections of pjsip.conf to override, one a line:
#   transport NAME HOSTPORT    a transport whose bind is a loopback address
#   endpoint NAME              an endpoint whose media_address (own or from a template) is loopback
pjsip_targets() {
    awk '
        function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
        {
            line = $0; sub(/;.*/, "", line); line = trim(line)
            if (line == "" || line ~ /^#/) next
            if (line ~ /^\[/) {
                n++; name[n] = line; sub(/^\[/, "", name[n]); sub(/\].*$/, "", name[n])
                opts[n] = ""
                if (match(line, /\]\(.*\)$/)) opts[n] = substr(line, RSTART + 2, RLENGTH - 3)
                next
            }
            if (!n) next
            key = line; sub(/[ \t]*=.*$/, "", key)
            val = line; sub(/^[^=]*=>?/, "", val); val = trim(val)
            kv[n, key] = val
        }
        END {
            for (i = 1; i <= n; i++)
                if (opts[i] ~ /(^|,)!(,|$)/ && ((i, "media_address") in kv)) tmpl[name[i]] = kv[i, "media_address"]
            for (i = 1; i <= n; i++) {
                if (opts[i] ~ /(^|,)!(,|$)/) continue
                media = ""
                k = split(opts[i], parts, ",")
                for (j = 1; j <= k; j++) if (parts[j] in tmpl) media = tmpl[parts[j]]
                if ((i, "media_address") in kv) media = kv[i, "media_address"]
                if (media ~ /^127\./) print "endpoint", name[i]
                if (kv[i, "type"] == "transport" && kv[i, "bind"] ~ /^127\./) print "transport", name[i], kv[i, "bind"]
            }
        }
    ' "$1"
}

render_pjsip() {
    in=$src/pjsip.conf out=$dest/pjsip.conf
    {
        echo "; Generated by render-config.sh at container start: the tested file, then"
        echo "; container settings appended to its sections. Edit $in or the environment."
        echo "#include \"$in\""
        pjsip_targets "$in" | while read -r kind name hostport; do
            echo
            if [ "$kind" = transport ]; then
                echo "[$name](+)"
                echo "bind = $bind_address:${hostport##*:}"
                for net in $local_net; do echo "local_net = $net"; done
                [ -z "$external_media" ] || echo "external_media_address = $external_media"
                [ -z "$external_signaling" ] || echo "external_signaling_address = $external_signaling"
                if [ -n "$external_signaling" ] && [ -n "$external_signaling_port" ]; then
                    echo "external_signaling_port = $external_signaling_port"
                fi
            else
                echo "[$name](+type=endpoint)"
                echo "media_address =${media_address:+ $media_address}"
                if [ -n "$media_address" ]; then
                    echo "bind_rtp_to_media_address = yes"
                else
                    echo "bind_rtp_to_media_address = no"
                fi
            fi
        done
    } > "$out.tmp"
    mv "$out.tmp" "$out"
}

render_manager() {
    in=$src/manager.conf out=$dest/manager.conf
    users=$(awk '
        { line = $0; sub(/;.*/, "", line) }
        line ~ /^\[/ { sec = line; sub(/^\[/, "", sec); sub(/\].*$/, "", sec); next }
        sec != "" && sec != "general" && line ~ /^[ \t]*permit[ \t]*=/ { print sec }
    ' "$in" | sort -u)
    current_bind=$(awk '{ line = $0; sub(/;.*/, "", line) }
        line ~ /^\[/ { sec = line; next }
        sec == "[general]" && line ~ /^[ \t]*bindaddr[ \t]*=/ { sub(/^[^=]*=[ \t]*/, "", line); sub(/[ \t]+$/, "", line); print line }' "$in")
    {
        echo "; Generated by render-config.sh at container start: the tested file, then"
        echo "; container settings appended to its sections. Edit $in or the environment."
        echo "#include \"$in\""
        if is_loopback "${current_bind:-127.0.0.1}"; then
            echo
            echo "[general](+)"
            echo "bindaddr = $ami_bind"
        fi
        for user in $users; do
            [ -n "$ami_permit" ] || break
            echo
            echo "[$user](+)"
            for net in $ami_permit; do echo "permit = $net"; done
        done
    } > "$out.tmp"
    mv "$out.tmp" "$out"
}

# rtp.conf with the port range of AST_RTP_START/AST_RTP_END (each optional).
render_rtp() {
    in=$src/rtp.conf out=$dest/rtp.conf
    for port in "$rtp_start" "$rtp_end"; do
        case $port in
            "" | *[!0-9]*) [ -z "$port" ] || die "AST_RTP_START/AST_RTP_END must be port numbers: $port" ;;
        esac
    done
    if [ -n "$rtp_start" ] && [ -n "$rtp_end" ] && [ "$rtp_start" -ge "$rtp_end" ]; then
        die "AST_RTP_START ($rtp_start) must be below AST_RTP_END ($rtp_end)"
    fi
    sed -e "${rtp_start:+s/^rtpstart[[:space:]]*=.*/rtpstart = $rtp_start/}" \
        -e "${rtp_end:+s/^rtpend[[:space:]]*=.*/rtpend = $rtp_end/}" "$in" > "$out.tmp"
    chmod 0644 "$out.tmp"
    mv "$out.tmp" "$out"
}

# One credential override file: render_credential FILE KEY VALUE FROM_FILE_VAR LABEL
render_credential() {
    out=$dest/$1 key=$2 value=$3 file_var=$4 label=$5
    eval "from_file=\${$file_var:-}"
    if [ -n "$from_file" ]; then
        [ -r "$from_file" ] || die "cannot read $file_var $from_file"
        secret=$(cat "$from_file")
    elif [ -n "$value" ]; then
        secret=$value
    else
        rm -f "$out"
        log "no $label set: keeps the development $key of the shipped file"
        return 0
    fi
    secret=$(printf '%s' "$secret" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
    [ -n "$secret" ] || die "the $label is empty"
    case $secret in
        *';'*) die "the $label must not contain ';' (Asterisk reads it as a comment)" ;;
    esac
    [ "$(printf '%s' "$secret" | wc -l)" -eq 0 ] || die "the $label must be one line"
    umask 027
    printf '%s = %s\n' "$key" "$secret" > "$out.tmp"
    chgrp asterisk "$out.tmp" 2>/dev/null || true
    chmod 0640 "$out.tmp"
    mv "$out.tmp" "$out"
}

render_secret() {
    render_credential manager_agi_bridge_secret.conf secret "${AGI_BRIDGE_AMI_SECRET:-}" \
        AGI_BRIDGE_AMI_SECRET_FILE "AMI secret"
    render_credential ari_agi_bridge_password.conf password "${AGI_BRIDGE_ARI_PASSWORD:-}" \
        AGI_BRIDGE_ARI_PASSWORD_FILE "ARI password"
}

networks=$(container_networks)
local_net=$(words "${AST_LOCAL_NET:-$networks}")
ami_permit=$(words "${AST_AMI_PERMIT:-$networks}")

for f in "$src"/*.conf; do
    name=$(basename "$f")
    case $overrides:$name in
        yes:pjsip.conf) render_pjsip ;;
        yes:manager.conf) render_manager ;;
        yes:rtp.conf) render_rtp ;;
        *) cp "$f" "$dest/$name.tmp" && chmod 0644 "$dest/$name.tmp" && mv "$dest/$name.tmp" "$dest/$name" ;;
    esac
done
render_secret

if [ "$overrides" = yes ]; then
    log "rendered $dest from $src: bind $bind_address, local_net ${local_net:-none}," \
        "external ${external_signaling:-none}/${external_media:-none}, AMI permit ${ami_permit:-none}"
else
    log "copied $src to $dest unchanged (AGI_BRIDGE_ASTERISK_OVERRIDES=$overrides)"
fi
