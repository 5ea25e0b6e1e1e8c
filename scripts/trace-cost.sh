#!/usr/bin/env bash
# Throughput cost of tracing: the same records (every one with a W3C
# traceparent) loaded into PostgreSQL with tracing off, on at 100% (every
# record sampled by its producer; batch ratio 1.0) and on at 1% (1% of records
# sampled by their producer; batch ratio 0.01). Spans go to a do-nothing
# OTLP/HTTP receiver on 127.0.0.1. Prints records/s from process start to the
# last row, per mode.
#
#   scripts/trace-cost.sh [RECORDS]      (default 300000; needs make services-up)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

records=${1:-300000}
run_id="tracecost_$(date +%s)_$$"
brokers=127.0.0.1:9092
admin_url=postgres://tidemill:tidemill@127.0.0.1:5432/postgres
db_url=postgres://tidemill:tidemill@127.0.0.1:5432/$run_id
work=$(mktemp -d)
port=$((20000 + RANDOM % 20000))

cargo build --release --quiet --bin tidemill --example loadgen
psql -qX "$admin_url" -c "CREATE DATABASE $run_id"
python3 - "$port" <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
receiver=$!
trap 'kill $receiver 2>/dev/null || true' EXIT

for share in 100 1; do
    LOADGEN_TRACEPARENT=$share target/release/examples/loadgen "$brokers" "${run_id}_$share" 8 "$records"
done

# measure NAME TOPIC TELEMETRY: loads TOPIC into table NAME; prints the rate.
measure() {
    local name=$1 topic=$2 telemetry=$3
    psql -qX "$db_url" -c "CREATE TABLE $name (event_id bigint, key text, ts timestamptz, type text, amount numeric(12,2), qty int, tag text)"
    cat > "$work/$name.toml" <<TOML
$telemetry
[pipelines.$name]
topics = ["$topic"]
group_id = "${run_id}_$name"
[pipelines.$name.kafka]
brokers = "$brokers"
[pipelines.$name.sink]
url = "$db_url"
table = "$name"
[pipelines.$name.batch]
max_rows = 5000
TOML
    local start_ns end_ns count pid
    start_ns=$(date +%s%N)
    RUST_LOG=warn target/release/tidemill run --config "$work/$name.toml" &
    pid=$!
    while :; do
        count=$(psql -qtAX "$db_url" -c "SELECT count(*) FROM $name")
        [[ $count -ge $records ]] && break
        sleep 0.2 # polling interval
    done
    end_ns=$(date +%s%N)
    kill -TERM $pid
    wait $pid
    awk -v n="$count" -v a="$start_ns" -v b="$end_ns" -v m="$name" \
        'BEGIN { s = (b - a) / 1e9; printf "trace-cost: %-8s %d records in %.2fs = %.0f records/s\n", m, n, s, n / s }'
}

endpoint="otlp_endpoint = \"http://127.0.0.1:$port/v1/traces\""
measure off "${run_id}_100" ""
measure on_100 "${run_id}_100" $'[telemetry]\n'"$endpoint"$'\nsampling_ratio = 1.0'
measure on_1 "${run_id}_1" $'[telemetry]\n'"$endpoint"$'\nsampling_ratio = 0.01'
echo "trace-cost: topics ${run_id}_100 / ${run_id}_1, database $run_id left for inspection"
