# shellcheck shell=bash
# The settings below are used by the scripts that source this file.
# shellcheck disable=SC2034
# Shared settings and helpers for scripts/services-up.sh and
# scripts/services-down.sh. Source it; do not execute it.
#
# Everything the test bed creates lives under "$SERVICES_DIR" (.services/ in
# the repository root, git-ignored). All services listen on 127.0.0.1 only.

# --- Locations ---------------------------------------------------------------

# Repository root, derived from this file's location so the scripts work from
# any working directory.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SERVICES_DIR="$REPO_ROOT/.services"

# --- Endpoints and credentials (keep in sync with docs/development.md / config/*.toml) ----

HOST=127.0.0.1

KAFKA_VERSION=4.4.0
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
KAFKA_DIR="$SERVICES_DIR/kafka"
KAFKA_PID_FILE="$KAFKA_DIR/kafka.pid"

PG_PORT=5432
PG_USER=tidemill
PG_PASSWORD=tidemill
PG_URL="postgres://$PG_USER:$PG_PASSWORD@$HOST:$PG_PORT/postgres"
# .services/pg holds data/ and postgres.log. When running as root, PostgreSQL
# runs as the "postgres" OS user; if that user cannot reach the repository
# (e.g. a checkout under /root), .services/pg is a symlink to a directory
# under /var/lib/postgresql instead (see services-up.sh).
PG_LINK="$SERVICES_DIR/pg"

MARIADB_PORT=3306
MARIADB_USER=tidemill
MARIADB_PASSWORD=tidemill
MARIADB_URL="mysql://$MARIADB_USER:$MARIADB_PASSWORD@$HOST:$MARIADB_PORT/mysql"
MARIADB_DIR="$SERVICES_DIR/mariadb"
MARIADB_SOCKET="$MARIADB_DIR/mysqld.sock"
MARIADB_PID_FILE="$MARIADB_DIR/mariadb.pid"
MARIADB_CNF="$MARIADB_DIR/my.cnf"

# --- Logging -----------------------------------------------------------------

# Name shown in front of every message; the sourcing script may override it.
: "${LOG_TAG:=services}"

log() { printf '[%s] %s\n' "$LOG_TAG" "$*"; }
warn() { printf '[%s] WARNING: %s\n' "$LOG_TAG" "$*" >&2; }
die() {
    printf '[%s] ERROR: %s\n' "$LOG_TAG" "$*" >&2
    exit 1
}

# --- Small helpers -----------------------------------------------------------

# is_root: true when running with uid 0.
is_root() { [[ $EUID -eq 0 ]]; }

# port_open PORT: true when something accepts TCP connections on HOST:PORT.
port_open() {
    # shellcheck disable=SC2016 # $0/$1 expand in the child bash, on purpose
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

# read_pid FILE [PATTERN]: print the pid stored in FILE if that process is
# alive (and, with PATTERN, if its command line contains PATTERN — guards
# against a stale pid file whose pid now belongs to something else).
read_pid() {
    local pid
    [[ -s $1 ]] || return 1
    pid="$(tr -dc '0-9' <"$1")"
    if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
        return 1
    fi
    if [[ -n ${2:-} ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"; then
        return 1
    fi
    printf '%s\n' "$pid"
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds or
# the deadline passes. A short sleep between attempts is the only sleep; the
# synchronisation itself is the command succeeding.
wait_for() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            warn "timed out after ${timeout}s waiting for $what"
            return 1
        fi
        sleep 0.5
    done
}

# wait_pid_exit PID SECONDS: wait for PID to exit; true if it did in time.
wait_pid_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# pg_bin_dir: directory holding the PostgreSQL server binaries. Prefers
# version 15 (Debian 12's), otherwise the newest installed.
pg_bin_dir() {
    local dir best=""
    if [[ -x /usr/lib/postgresql/15/bin/pg_ctl ]]; then
        echo /usr/lib/postgresql/15/bin
        return
    fi
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x $dir/pg_ctl ]] && best=$dir
    done
    [[ -n $best ]] || return 1
    echo "$best"
}

# as_pg_user COMMAND...: run COMMAND as the OS user that owns the PostgreSQL
# data directory ("postgres" when we are root; PostgreSQL refuses to run as
# root), with a cwd that user can read.
as_pg_user() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}
