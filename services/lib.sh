# shellcheck shell=bash
# Shared helpers for services/*.sh. Sourced, not executed.
#
# Conventions:
#   - every service keeps its data, config, logs and pid file under $UMSG_STATE
#     (${UMSG_STATE_DIR:-/var/tmp/unified-msg}); nothing of the machine's own services is used;
#   - a script prints one short status line on stdout; errors go to stderr with the tail
#     of the relevant log, and the script exits non-zero;
#   - each script takes a per-service lock (fd 9) so that two concurrent `start`s
#     (e.g. `make -j`) cannot both launch a server. Daemons must be started with `9>&-`
#     so they do not inherit the lock and hold it forever.

# shellcheck disable=SC2034  # used by the scripts that source this file
UMSG_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
UMSG_STATE=${UMSG_STATE_DIR:-/var/tmp/unified-msg}
UMSG_SVC=${UMSG_SVC:-service}

# The machine's default locale may be unset or missing; tools like initdb and psql
# complain loudly about that. C.UTF-8 is built into Debian's glibc.
export LC_ALL=C.UTF-8 LANG=C.UTF-8

say() { printf '%s: %s\n' "$UMSG_SVC" "$*"; }
warn() { printf '%s: %s\n' "$UMSG_SVC" "$*" >&2; }
die() { printf '%s: error: %s\n' "$UMSG_SVC" "$*" >&2; exit 1; }

# A service's `status` from its pid (empty: not running, exit 3), for the scripts that run one process.
say_status() {
    if [ -n "$1" ]; then
        say "running on 127.0.0.1:$PORT (pid $1)"
    else
        say "not running"
        return 3
    fi
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Print the last lines of each existing log file to stderr (for failure reports).
show_logs() {
    local f
    for f in "$@"; do
        [ -s "$f" ] || continue
        printf -- '--- last lines of %s ---\n' "$f" >&2
        tail -n 40 "$f" >&2
    done
}

# Like show_logs for one file, but only what was appended after byte offset $2 (this run).
show_log_since() {
    local f=$1 offset=$2
    [ -s "$f" ] || return 0
    [ "$(stat -c %s "$f")" -gt "$offset" ] || return 0
    printf -- '--- last lines of %s (this run) ---\n' "$f" >&2
    tail -c +"$((offset + 1))" "$f" | tail -n 40 >&2
}

ensure_state_dir() {
    mkdir -p "$UMSG_STATE"
    # Other users (postgres, when we are root) must be able to traverse it.
    if is_root; then chmod 755 "$UMSG_STATE"; fi
}

# Serialize concurrent invocations for one service. The lock lives in the state dir.
take_lock() {
    local name=$1
    ensure_state_dir
    exec 9>"$UMSG_STATE/.$name.lock"
    flock -w 300 9 || die "timed out waiting for $UMSG_STATE/.$name.lock (another start/stop still running?)"
}

# True if something accepts TCP connections on 127.0.0.1:$1. Uses bash's /dev/tcp so that
# it needs no extra package (a fresh Debian image has neither ss nor nc).
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True if process $1 is alive and its command line contains every further argument.
# Guards against stale pid files whose pid was reused by an unrelated process.
pid_matches() {
    local pid=$1 cmd pat
    shift
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    [ -n "$cmd" ] || return 1   # zombie / exiting
    for pat in "$@"; do
        case $cmd in *"$pat"*) ;; *) return 1 ;; esac
    done
}

# Pids of live processes whose command line contains every argument (no procps needed).
find_pids() {
    local d pid
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        if [ "$pid" = "$$" ] || [ "$pid" = "$BASHPID" ]; then continue; fi
        if pid_matches "$pid" "$@"; then echo "$pid"; fi
    done
}

# True once process $1 has exited. A zombie counts as exited: a daemon is re-parented to
# pid 1, which may reap it only later (on this kind of machine, ~1.5 s later).
pid_gone() {
    local state
    kill -0 "$1" 2>/dev/null || return 0
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 0
    [ -z "$state" ] || [ "$state" = Z ] || [ "$state" = X ]
}

# Send SIGTERM, wait up to $2 seconds, then SIGKILL. Returns once the process is gone.
kill_and_wait() {
    local pid=$1 grace=$2 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < grace * 10; i++)); do
        pid_gone "$pid" && return 0
        sleep 0.1
    done
    warn "pid $pid did not exit within ${grace}s of SIGTERM, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        pid_gone "$pid" && return 0
        sleep 0.1
    done
    die "pid $pid survived SIGKILL"
}

# Install Debian packages; only possible as root. `apt-get update` runs at most once an
# hour across all our scripts (a stamp in the state dir), since up.sh may need several.
apt_install() {
    is_root || die "missing $*; install with: sudo apt-get install -y $* (or run this as root)"
    command -v apt-get >/dev/null || die "missing $* and no apt-get to install it with"
    ensure_state_dir
    local stamp="$UMSG_STATE/.apt-updated"
    if [ -z "$(find "$stamp" -mmin -60 2>/dev/null)" ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
        touch "$stamp"
    fi
    # Debian's maintainer scripts start the packaged service (system redis on 6379, the
    # default postgres cluster on 5432) unless policy-rc.d forbids it. We run private
    # instances only, so forbid it for the duration of the install if nothing else does.
    local policy=/usr/sbin/policy-rc.d added_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# temporary, from unified-msg services/lib.sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        added_policy=1
    fi
    say "apt-get install -y $*"
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
    if [ -n "$added_policy" ]; then rm -f "$policy"; fi
    [ "$rc" -eq 0 ] || die "apt-get install $* failed (exit $rc)"
}

# Send SIGTERM to every pid at once, wait up to $1 seconds for all of them, then SIGKILL the
# rest. For processes that shut down faster together (a Kafka cluster's nodes).
kill_all_and_wait() {
    local grace=$1 pid i left
    shift
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < grace * 10; i++)); do
        left=
        for pid in "$@"; do pid_gone "$pid" || left+=" $pid"; done
        [ -n "$left" ] || return 0
        sleep 0.1
    done
    warn "pid(s)$left did not exit within ${grace}s of SIGTERM, sending SIGKILL"
    for pid in $left; do
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            pid_gone "$pid" && break
            sleep 0.1
        done
        pid_gone "$pid" || die "pid $pid survived SIGKILL"
    done
}
