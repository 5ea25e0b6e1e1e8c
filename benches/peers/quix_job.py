"""The Quix Streams peer: one Application per workload, Kafka -> PostgreSQLSink (quixstreams 3.28).

Runs until run.sh stops it. The sink writes each partition's batch on every checkpoint
(commit_interval, default 5 s here as in Quix) with psycopg2's execute_values, then the
consumer offsets are committed: at-least-once delivery (Quix's default processing guarantee;
its exactly-once mode covers Kafka outputs only, not this sink). Tables are created by run.sh
in the contract's layout; the sink runs with schema_auto_update=False and
include_metadata=False so it writes exactly those columns.
- W1: filter type != 'view', apply value = amount * qty -> append.
- W2: stateful running totals per message key (RocksDB state + changelog topic) -> the sink's
  upsert (INSERT ... ON CONFLICT (key) DO UPDATE, deduplicated per batch) on w2_totals.key.
- W3: event time from the record's ts (timestamp_extractor), tumbling_window(1000) with
  Count + Sum(amount), .final(closing_strategy="partition"): a window is emitted when its
  partition's stream time passes the window end (the default "key" strategy waits for a later
  record of the same key, so a key that goes quiet would never emit its window).
"""

import argparse
import os

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Sum
from quixstreams.sinks.community.postgresql import PostgreSQLSink

W1_COLS = ("event_id", "key", "ts", "type", "amount", "qty")


def event_time(value, _headers, _timestamp, _timestamp_type):
    return value["ts"]


def w1(sdf):
    sdf = sdf.filter(lambda v: v["type"] != "view")
    return sdf.apply(lambda v: {**{c: v[c] for c in W1_COLS}, "value": v["amount"] * v["qty"]})


def running_total(value, state):
    cnt, total = state.get("t", (0, 0))
    cnt, total = cnt + 1, total + value["amount"]
    state.set("t", (cnt, total))
    return {"key": value["key"], "cnt": cnt, "total": total}


def w2(sdf):
    return sdf.apply(running_total, stateful=True)


def w3(sdf):
    sdf = sdf.tumbling_window(1000).agg(cnt=Count(), total=Sum("amount")).final(
        closing_strategy="partition")
    return sdf.apply(
        lambda v, key, _ts, _h: {"key": key, "window_start": v["start"], "cnt": v["cnt"],
                                 "total": v["total"]},
        metadata=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", choices=["W1", "W2", "W3"], required=True)
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--commit-interval", type=float,
                    default=float(os.environ.get("PEER_QUIX_COMMIT_INTERVAL", "5")))
    a = ap.parse_args()

    app = Application(broker_address=a.brokers, consumer_group=a.group,
                      auto_offset_reset="earliest", state_dir=a.state_dir,
                      commit_interval=a.commit_interval, loglevel="WARNING")
    topic = app.topic(a.topic, key_deserializer="str", value_deserializer="json",
                      timestamp_extractor=event_time if a.workload == "W3" else None)
    table = {"W1": "w1_events", "W2": "w2_totals", "W3": "w3_windows"}[a.workload]
    sink = PostgreSQLSink(host=a.host, port=a.port, dbname=a.db, user=a.user,
                          password=a.password, table_name=table, schema_auto_update=False,
                          include_metadata=False,
                          primary_key_columns="key" if a.workload == "W2" else (),
                          upsert_on_primary_key=a.workload == "W2")
    sdf = {"W1": w1, "W2": w2, "W3": w3}[a.workload](app.dataframe(topic))
    sdf.sink(sink)
    app.run()


if __name__ == "__main__":
    main()
