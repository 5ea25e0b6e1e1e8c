#!/usr/bin/env bash
# make demo-cdc: database to database, end to end, on the test bed's services.
#
#   PostgreSQL table  --Debezium (Kafka Connect)-->  Kafka  --tidemill-->  SQLite table
#
# Creates a source database `demo_cdc_src` with a `customers` table, starts a
# Kafka Connect standalone worker running Debezium's PostgreSQL connector on
# it, starts tidemill applying the change stream to target/demo-cdc/target.db,
# makes some changes (insert, update, delete, a key change) and shows both
# tables side by side once they agree. Everything it started is stopped on
# exit; the source database and its replication slot are dropped.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/lib/services-common.sh
source "$REPO_ROOT/scripts/lib/services-common.sh"

KAFKA_BOOTSTRAP="$HOST:$KAFKA_PORT"
DIR="$REPO_ROOT/target/demo-cdc"
LIBS="$SERVICES_DIR/connect/libs"
SRC=demo_cdc_src
# A run of its own: the topic of an earlier run stays in the broker.
RUN="demo_cdc_$(date +%s)"
SLOT=$RUN
TOPIC=$RUN.public.customers
BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/tidemill"
PIDS=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
src_sql() { psql "${PG_URL%/postgres}/$SRC" -XAtqc "$1"; }
admin_sql() { psql "$PG_URL" -XAtqc "$1"; }

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    # Every slot in the source database, this run's or an aborted one's:
    # a slot keeps its WAL and stops the database from being dropped.
    admin_sql "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$SRC' AND NOT active" >/dev/null 2>&1 || true
    admin_sql "DROP DATABASE IF EXISTS $SRC WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

[[ -x $BIN ]] || die "no release binary at $BIN (make build)"
[[ -d $LIBS ]] || die "no Kafka Connect jars in $LIBS (make services-up)"
rm -rf "$DIR" && mkdir -p "$DIR"

say "1. a source table in PostgreSQL ($SRC)"
cleanup # what an aborted run left
admin_sql "CREATE DATABASE $SRC"
src_sql "CREATE TABLE customers (id INT PRIMARY KEY, name TEXT, balance NUMERIC(10,2), updated TIMESTAMPTZ DEFAULT now())"
src_sql "INSERT INTO customers (id, name, balance) VALUES (1, 'Ada', 10.50), (2, 'Grace', 99.99), (3, 'Linus', 0)"
psql "${PG_URL%/postgres}/$SRC" -Xqc "SELECT id, name, balance FROM customers ORDER BY id"

say "2. Debezium's PostgreSQL connector in a Kafka Connect worker (log: ${DIR#"$REPO_ROOT"/}/connect.log)"
cat >"$DIR/worker.properties" <<EOF
bootstrap.servers=$KAFKA_BOOTSTRAP
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
offset.storage.file.filename=$DIR/connect.offsets
offset.flush.interval.ms=1000
listeners=http://127.0.0.1:18083
plugin.discovery=only_scan
EOF
cat >"$DIR/connector.properties" <<EOF
name=$RUN
connector.class=io.debezium.connector.postgresql.PostgresConnector
database.hostname=$HOST
database.port=$PG_PORT
database.user=$PG_USER
database.password=$PG_PASSWORD
database.dbname=$SRC
database.sslmode=disable
topic.prefix=$RUN
plugin.name=pgoutput
slot.name=$SLOT
publication.name=$SLOT
publication.autocreate.mode=filtered
table.include.list=public.customers
EOF
printf 'appender.f.type = File\nappender.f.name = F\nappender.f.fileName = %s\nappender.f.layout.type = PatternLayout\nappender.f.layout.pattern = %%d %%p %%c{1} %%m%%n\nrootLogger.level = info\nrootLogger.appenderRef.f.ref = F\n' \
    "$DIR/connect.log" >"$DIR/log4j2.properties"
java -Xmx384m -cp "$LIBS/*" -Dlog4j2.configurationFile="$DIR/log4j2.properties" \
    org.apache.kafka.connect.cli.ConnectStandalone "$DIR/worker.properties" "$DIR/connector.properties" \
    >"$DIR/connect.out" 2>&1 &
PIDS+=($!)
events() { kcat -b "$KAFKA_BOOTSTRAP" -C -t "$TOPIC" -o beginning -e -q 2>/dev/null | wc -l; }
snapshot_published() { (($(events) >= 3)); }
wait_for 120 "Debezium's snapshot in $TOPIC" snapshot_published ||
    die "no snapshot after 120 s; see $DIR/connect.log"
echo "snapshot published: $(events) change events in $TOPIC"

say "3. tidemill applying the change stream to SQLite (${DIR#"$REPO_ROOT"/}/target.db)"
cat >"$DIR/tidemill.toml" <<EOF
[pipelines.customers]
topics = ["$TOPIC"]
group_id = "$RUN"
format = "debezium"

[pipelines.customers.kafka]
brokers = "$KAFKA_BOOTSTRAP"

[pipelines.customers.sink]
url = "sqlite://$DIR/target.db"
table = "customers"
mode = "upsert"
key_columns = ["id"]

[pipelines.customers.lineage]
source_position = "src_lsn"
source_committed_at = "src_committed"
ingested_at = "loaded_at"
EOF
sqlite3 "$DIR/target.db" "CREATE TABLE customers (id BIGINT PRIMARY KEY, name TEXT, balance DECIMAL(10,2), \
    updated TIMESTAMP, src_lsn TEXT, src_committed TEXT, loaded_at TEXT)"
RUST_LOG=warn "$BIN" run --config "$DIR/tidemill.toml" >"$DIR/tidemill.log" 2>&1 &
PIDS+=($!)

say "4. changes in the source: an insert, an update, a delete, a key change"
src_sql "INSERT INTO customers (id, name, balance) VALUES (4, 'Barbara', 12.34)"
src_sql "UPDATE customers SET balance = balance + 1000, updated = now() WHERE id = 1"
src_sql "DELETE FROM customers WHERE id = 3"
src_sql "UPDATE customers SET id = 20 WHERE id = 2"

want="$(src_sql "SELECT string_agg(id || ':' || name || ':' || balance, ' ' ORDER BY id) FROM customers")"
got() { sqlite3 "$DIR/target.db" "SELECT group_concat(id || ':' || name || ':' || printf('%.2f', balance), ' ') FROM (SELECT * FROM customers ORDER BY id)" 2>/dev/null || true; }
agree() { [[ "$(got)" == "$want" ]]; }
wait_for 60 "the target to equal the source" agree ||
    die "the target did not reach the source's state: want '$want', got '$(got)'; see $DIR/tidemill.log"

say "5. source (PostgreSQL) and target (SQLite) agree"
psql "${PG_URL%/postgres}/$SRC" -Xqc "SELECT id, name, balance FROM customers ORDER BY id"
sqlite3 -header -column "$DIR/target.db" "SELECT id, name, printf('%.2f', balance) AS balance, src_lsn, src_committed, loaded_at FROM customers ORDER BY id"
echo
echo "Every change applied exactly once, each row with its source position and commit time."
echo "Config: ${DIR#"$REPO_ROOT"/}/tidemill.toml — see docs/cdc.md."
