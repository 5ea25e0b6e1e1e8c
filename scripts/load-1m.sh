#!/usr/bin/env bash
# One large run against the real test bed: N generated records (default
# 1,000,000, 8 partitions) → tidemill (release build) → PostgreSQL or MariaDB,
# then the rows loaded and the records/s from the pipeline's start to its last
# commit.
#
#   scripts/load-1m.sh [RECORDS] [MODE] [DB]
#       MODE: insert (default) | upsert | state      DB: postgres (default) | mariadb
#   COPY_THRESHOLD=0 scripts/load-1m.sh …    PostgreSQL without the COPY path
#
# On MariaDB `ts` is VARCHAR(32): MariaDB's DATETIME does not read RFC 3339's
# `Z` suffix (a typed timestamp needs the type mapping of issue #4).
#
# MODE=state (PostgreSQL): after the insert run, a second process keys the same
# records by event_id (one key per record: RECORDS distinct keys) and keeps a
# running count and sum per key with a 10,000-entry state cache; the script
# then checks every key against PostgreSQL's own GROUP BY over the inserted
# rows and prints the stateful process's peak RSS (VmHWM).
#
# Needs `make services-up`. Leaves the topic and the database behind for
# inspection (names printed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

records=${1:-1000000}
mode=${2:-insert}
db=${3:-postgres}
run_id="load_$(date +%s)_$$"
brokers=127.0.0.1:9092
work=$(mktemp -d)

cargo build --release --quiet --bin tidemill --example loadgen
case $db in
postgres)
    db_url=postgres://tidemill:tidemill@127.0.0.1:5432/$run_id
    psql -qX postgres://tidemill:tidemill@127.0.0.1:5432/postgres -c "CREATE DATABASE $run_id"
    psql -qX "$db_url" -c "CREATE TABLE events (event_id bigint PRIMARY KEY, key text, ts timestamptz, type text, amount numeric(12,2), qty int, tag text)"
    count_rows() { psql -qtAX "$db_url" -c "SELECT count(*) FROM $1"; }
    ;;
mariadb)
    db_url=mysql://tidemill:tidemill@127.0.0.1:3306/$run_id
    maria() { mariadb --no-defaults -h 127.0.0.1 -P 3306 -u tidemill -ptidemill "$@"; }
    maria -e "CREATE DATABASE $run_id"
    maria "$run_id" -e "CREATE TABLE events (event_id bigint PRIMARY KEY, \`key\` text, ts varchar(32), type text, amount decimal(12,2), qty int, tag text)"
    count_rows() { maria -NB "$run_id" -e "SELECT count(*) FROM $1"; }
    ;;
*)
    echo "load-1m: unknown database '$db' (postgres or mariadb)" >&2
    exit 2
    ;;
esac

target/release/examples/loadgen "$brokers" "$run_id" 8 "$records"

extra=""
if [[ $mode == upsert ]]; then
    extra=$'mode = "upsert"\nkey_columns = ["event_id"]'
fi
cat > "$work/load.toml" <<TOML
[pipelines.load]
topics = ["$run_id"]
group_id = "$run_id"
[pipelines.load.kafka]
brokers = "$brokers"
[pipelines.load.sink]
url = "$db_url"
table = "events"
$extra
${COPY_THRESHOLD:+copy_threshold = $COPY_THRESHOLD}
[pipelines.load.batch]
max_rows = 5000
TOML

# run CONFIG TABLE EXPECTED: runs tidemill until TABLE holds EXPECTED rows; sets secs, count, peak_kb.
run() {
    local config=$1 table=$2 expected=$3
    start_ns=$(date +%s%N)
    RUST_LOG=warn target/release/tidemill run --config "$config" &
    pid=$!
    trap 'kill $pid 2>/dev/null || true' EXIT
    deadline=$((SECONDS + 900))
    while :; do
        count=$(count_rows "$table")
        [[ $count -ge $expected ]] && break
        if ((SECONDS > deadline)); then
            echo "load-1m: timed out with $count rows in $table" >&2
            exit 1
        fi
        sleep 0.2 # polling interval
    done
    end_ns=$(date +%s%N)
    peak_kb=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
    kill -TERM $pid
    wait $pid
    trap - EXIT
    secs=$(awk -v a="$start_ns" -v b="$end_ns" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    rate=$(awk -v n="$count" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
}

run "$work/load.toml" events "$records"
echo "load-1m: db=$db mode=${mode/state/insert} copy_threshold=${COPY_THRESHOLD:-default} rows=$count in ${secs}s from process start = $rate records/s, peak RSS $((peak_kb / 1024)) MiB (topic/db $run_id)"

if [[ $mode == state && $db == postgres ]]; then
    psql -qX "$db_url" -c "CREATE TABLE totals (event_id bigint PRIMARY KEY, n bigint NOT NULL, total numeric(14,2) NOT NULL)"
    cat > "$work/state.toml" <<TOML
[pipelines.state]
topics = ["$run_id"]
group_id = "${run_id}_state"
[pipelines.state.kafka]
brokers = "$brokers"
[pipelines.state.sink]
url = "$db_url"
table = "totals"
mode = "upsert"
key_columns = ["event_id"]
[pipelines.state.batch]
max_rows = 5000
[pipelines.state.state]
cache_entries = 10000
[[pipelines.state.transforms]]
type = "key"
fields = ["event_id"]
[[pipelines.state.transforms]]
type = "aggregate"
name = "per_event"
columns = { n = "count()", total = "sum(amount)" }
TOML
    run "$work/state.toml" totals "$records"
    wrong=$(psql -qtAX "$db_url" -c "SELECT count(*) FROM (SELECT event_id, count(*) AS n, sum(amount) AS total FROM events GROUP BY event_id) e FULL JOIN totals t USING (event_id) WHERE e.n IS DISTINCT FROM t.n OR e.total IS DISTINCT FROM t.total")
    states=$(psql -qtAX "$db_url" -c "SELECT count(*) FROM tidemill_state WHERE operator = 'per_event'")
    echo "load-1m: mode=state keys=$count states=$states mismatches=$wrong in ${secs}s = $rate records/s, peak RSS $((peak_kb / 1024)) MiB (cache_entries 10000)"
    [[ $wrong -eq 0 ]] || exit 1
fi
