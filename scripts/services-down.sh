#!/usr/bin/env bash
# Stop the test-bed services started by scripts/services-up.sh (Kafka,
# PostgreSQL, MariaDB), using the pid files / data directories under
# .services/. Services this checkout did not start are left alone. Succeeds
# quietly when nothing is running. Data is kept; `rm -rf .services` after
# stopping gives a clean slate (the Kafka jars are cached there too).
set -euo pipefail

LOG_TAG=services-down
# shellcheck source=scripts/lib/services-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/services-common.sh"
cd "$REPO_ROOT"

[[ -d $SERVICES_DIR ]] || exit 0

# stop_pid NAME PIDFILE PATTERN SECONDS: SIGTERM the process (if its command
# line contains PATTERN), wait up to SECONDS for a clean shutdown, then
# SIGKILL it.
stop_pid() {
    local name=$1 pidfile=$2 pattern=$3 grace=$4 pid
    if ! pid="$(read_pid "$pidfile" "$pattern")"; then
        rm -f "$pidfile"
        return 0
    fi
    log "$name: stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_pid_exit "$pid" "$grace"; then
        warn "$name: still running after ${grace}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        wait_pid_exit "$pid" 10 || die "$name: pid $pid does not die"
    fi
    rm -f "$pidfile"
    log "$name: stopped"
}

# --- Kafka: controlled shutdown on SIGTERM (a few seconds) ---------------------
stop_pid kafka "$KAFKA_PID_FILE" kafka.Kafka 60

# --- PostgreSQL: pg_ctl stop on our data directory -----------------------------
pg_data="$(readlink -f "$PG_LINK" 2>/dev/null || true)/data"
if [[ -f $pg_data/postmaster.pid ]]; then
    if bin="$(pg_bin_dir)" && as_pg_user "$bin/pg_ctl" -D "$pg_data" status >/dev/null 2>&1; then
        log "postgres: stopping"
        as_pg_user "$bin/pg_ctl" -D "$pg_data" -m fast -w -t 60 stop >/dev/null
        log "postgres: stopped"
    fi
fi

# --- MariaDB: SIGTERM is a normal shutdown -------------------------------------
stop_pid mariadb "$MARIADB_PID_FILE" mariadbd 60
rm -f "$MARIADB_SOCKET"
