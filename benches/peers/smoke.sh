#!/usr/bin/env bash
# End-to-end check of the peers without the Rust harness: fills a new topic with fill.py, then for
# each peer x workload creates a new database, runs run.sh and requires verified=true; also checks
# that run.sh's W1/W2 figures equal the ones fill.py computed while generating.
# Usage: benches/peers/smoke.sh [records] [peer:workload ...]   (default 200000, all six)
# Env: PGPASSWORD (default tidemill), BROKERS (default 127.0.0.1:9092), DIST (uniform|zipf),
# KEEP=1 keeps the topic and the databases (dropped at the end otherwise).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
N=${1:-200000}; shift || true
RUNS=${*:-flink:W1 flink:W2 flink:W3 quix:W1 quix:W2 quix:W3}
BROKERS=${BROKERS:-127.0.0.1:9092}
export PGPASSWORD=${PGPASSWORD:-tidemill}
TAG=peers_smoke_$(date +%s)_$$
PY="$ROOT/target/bench/peers/quix-venv/bin/python"
OUT="$ROOT/target/bench/peers/logs/$TAG.jsonl"
mkdir -p "$(dirname "$OUT")"

fill=$("$PY" -W ignore "$HERE/fill.py" --brokers "$BROKERS" --topic "$TAG" --records "$N" \
  --dist "${DIST:-uniform}")
echo "fill: $fill"
field() { "$PY" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
fail=0
for pw in $RUNS; do
  p=${pw%%:*}; w=${pw##*:}; db="${TAG}_${p}_${w,,}"
  psql -h 127.0.0.1 -U tidemill -d postgres -qc "CREATE DATABASE $db"
  cmd=("$HERE/run.sh" "$p" "$w" --brokers "$BROKERS" --topic "$TAG" --partitions 8 --records "$N"
       --pg-url "postgres://tidemill:tidemill@127.0.0.1:5432/$db" --group "$db")
  echo "## ${cmd[*]}"
  line=$("${cmd[@]}" | tail -n 1) || { echo "smoke: $p $w failed"; fail=1; continue; }
  echo "$line" | tee -a "$OUT"
  [ "$(field "$line" verified)" = True ] || { echo "smoke: $p $w not verified"; fail=1; }
  case $w in
    W1) [ "$(field "$line" rows)" = "$(field "$fill" w1_rows)" ] || { echo "smoke: W1 rows differ from fill.py"; fail=1; } ;;
    W2) [ "$(field "$line" rows)" = "$(field "$fill" w2_keys)" ] || { echo "smoke: W2 keys differ from fill.py"; fail=1; } ;;
  esac
done
if [ "${KEEP:-0}" != 1 ]; then
  for pw in $RUNS; do p=${pw%%:*}; w=${pw##*:}
    psql -h 127.0.0.1 -U tidemill -d postgres -qc "DROP DATABASE IF EXISTS ${TAG}_${p}_${w,,}"
  done
  "$PY" -W ignore -c 'import sys; from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
admin.delete_topics([sys.argv[2]])[sys.argv[2]].result(30)' \
    "$BROKERS" "$TAG"
fi
echo "smoke: results in $OUT"
exit $fail
