#!/usr/bin/env bash
# Runs one peer on one workload; see benches/peers/README.md and runner.py. Usage:
#   benches/peers/run.sh <flink|quix> <W1|W2|W3> --brokers 127.0.0.1:9092 --topic T \
#     --partitions 8 --records N --pg-url postgres://tidemill:tidemill@127.0.0.1:5432/DB --group G
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PY="$HERE/../../target/bench/peers/quix-venv/bin/python"
[ -x "$PY" ] || { echo "run.sh: $PY missing: run benches/peers/setup.sh first" >&2; exit 2; }
exec "$PY" -W ignore "$HERE/runner.py" "$@"
