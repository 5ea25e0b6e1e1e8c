#!/usr/bin/env bash
# One large run against the real test bed: N generated records (default
# 1,000,000, 8 partitions) → tidemill (release build) → PostgreSQL or MariaDB,
# then the rows loaded and the records/s from the pipeline's start to its last
# commit.
#
#   scripts/load-1m.sh [RECORDS] [MODE] [DB]
#       MODE: insert (default) | upsert      DB: postgres (default) | mariadb
#   COPY_THRESHOLD=0 scripts/load-1m.sh …    PostgreSQL without the COPY path
#
# On MariaDB `ts` is VARCHAR(32): MariaDB's DATETIME does not read RFC 3339's
# `Z` suffix (a typed timestamp needs the type mapping of issue #4).
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
    count_rows() { psql -qtAX "$db_url" -c "SELECT count(*) FROM events"; }
    ;;
mariadb)
    db_url=mysql://tidemill:tidemill@127.0.0.1:3306/$run_id
    maria() { mariadb --no-defaults -h 127.0.0.1 -P 3306 -u tidemill -ptidemill "$@"; }
    maria -e "CREATE DATABASE $run_id"
    maria "$run_id" -e "CREATE TABLE events (event_id bigint PRIMARY KEY, \`key\` text, ts varchar(32), type text, amount decimal(12,2), qty int, tag text)"
    count_rows() { maria -NB "$run_id" -e "SELECT count(*) FROM events"; }
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

start_ns=$(date +%s%N)
RUST_LOG=warn target/release/tidemill run --config "$work/load.toml" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
deadline=$((SECONDS + 600))
while :; do
    count=$(count_rows)
    [[ $count -ge $records ]] && break
    if ((SECONDS > deadline)); then
        echo "load-1m: timed out with $count rows" >&2
        exit 1
    fi
    sleep 0.2 # polling interval
done
end_ns=$(date +%s%N)
kill -TERM $pid
wait $pid
trap - EXIT
secs=$(awk -v a="$start_ns" -v b="$end_ns" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
rate=$(awk -v n="$count" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
echo "load-1m: db=$db mode=$mode copy_threshold=${COPY_THRESHOLD:-default} rows=$count in ${secs}s from process start = $rate records/s (topic/db $run_id)"
