# Shell helpers around apt-get, sourced by the scripts in scripts/ (POSIX sh).
#
#   apt_wait_for_locks      wait (up to APT_LOCK_WAIT s, default 600) while another process
#                           holds one of apt's or dpkg's locks: a fresh VM often runs
#                           unattended-upgrades or cloud-init's apt for its first minutes
#   apt_get ARGS...         apt_wait_for_locks, then apt-get ARGS, which itself waits for
#                           the dpkg lock too (DPkg::Lock::Timeout), in case of a race
#   debian_mirror           the Debian mirror URI of this machine's apt sources
#
# apt and dpkg take POSIX (fcntl) locks; the kernel lists every held one in /proc/locks
# as "... PID MAJ:MIN:INODE ...", so a lock is found by the inode of its file.

APT_LOCK_FILES=${APT_LOCK_FILES:-/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock}

# The pid holding a lock on one of APT_LOCK_FILES, if any ("" when all are free).
apt_lock_holder() {
    for _f in $APT_LOCK_FILES; do
        [ -e "$_f" ] || continue
        _inode=$(stat -c %i "$_f" 2>/dev/null) || continue
        _pid=$(awk -v ino="$_inode" '{ n = split($0, w, " "); for (i = 1; i <= n; i++)
                   if (w[i] ~ /^[0-9a-f]+:[0-9a-f]+:[0-9]+$/) { split(w[i], d, ":");
                       if (d[3] == ino) { print w[i - 1]; exit } } }' /proc/locks)
        if [ -n "$_pid" ]; then
            echo "$_pid $_f"
            return 0
        fi
    done
    return 0
}

apt_wait_for_locks() {
    _limit=${APT_LOCK_WAIT:-600}
    _waited=0
    while :; do
        _holder=$(apt_lock_holder)
        [ -n "$_holder" ] || return 0
        _pid=${_holder%% *}
        if [ "$_waited" -ge "$_limit" ]; then
            echo "apt: ${_holder#* } is still locked by pid $_pid" \
                "($(cat "/proc/$_pid/cmdline" 2>/dev/null | tr '\0\n' '  ' | cut -c1-80)) after ${_limit} s;" \
                "wait for it to finish (or raise APT_LOCK_WAIT) and run this again" >&2
            return 1
        fi
        if [ $((_waited % 30)) -eq 0 ]; then
            echo "apt: waiting for ${_holder#* } (held by pid $_pid:" \
                "$(cat "/proc/$_pid/cmdline" 2>/dev/null | tr '\0\n' '  ' | cut -c1-80))" >&2
        fi
        sleep 1
        _waited=$((_waited + 1))
    done
}

apt_get() {
    apt_wait_for_locks || return 1
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="${APT_LOCK_WAIT:-600}" "$@"
}

# First URI of a "Types: deb" stanza (deb822 .sources), else of a "deb" line (.list), that
# is not the security archive. AGI_BRIDGE_DEBIAN_MIRROR overrides it.
debian_mirror() {
    if [ -n "${AGI_BRIDGE_DEBIAN_MIRROR:-}" ]; then echo "${AGI_BRIDGE_DEBIAN_MIRROR%/}"; return 0; fi
    _uri=
    for _f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$_f" ] || continue
        _uri=$(awk 'BEGIN { RS = ""; FS = "\n" }
                   { types = ""; uris = "";
                     for (i = 1; i <= NF; i++) {
                       if ($i ~ /^Types:/) types = $i;
                       if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) } }
                     if (types ~ /(^|[ \t])deb([ \t]|$)/ && uris != "") {
                       n = split(uris, u, /[ \t]+/);
                       for (j = 1; j <= n; j++) if (u[j] !~ /security/) { print u[j]; exit } } }' "$_f")
        [ -z "$_uri" ] || break
    done
    if [ -z "$_uri" ]; then
        for _f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -r "$_f" ] || continue
            _uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) {
                                        if ($i !~ /security/) { print $i; exit } ; break } }' "$_f")
            [ -z "$_uri" ] || break
        done
    fi
    if [ -z "$_uri" ]; then
        echo "no Debian mirror found in /etc/apt/sources.list{,.d}; set AGI_BRIDGE_DEBIAN_MIRROR" >&2
        return 1
    fi
    echo "${_uri%/}"
}
