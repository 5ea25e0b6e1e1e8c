"""The Flink peer: one PyFlink SQL job per workload, Kafka source -> JDBC sink (PostgreSQL).

Runs in PyFlink's local MiniCluster (one JVM started by PyFlink's gateway; the SQL job has no
Python UDFs, so no Python worker runs during processing). It keeps running (an unbounded Kafka
source) until run.sh stops it. Tuning (see README.md):
- parallelism = --parallelism (default: cores);
- checkpointing every 10 s to files (under the runner's temporary directory), AT_LEAST_ONCE mode: the Kafka source commits offsets on checkpoints
  and the JDBC sink flushes on every checkpoint, so delivery is at-least-once (W2's upsert and
  its primary key make replays idempotent; W1/W3 appends could duplicate after a failure);
- JDBC sink: flush at 5,000 rows or every second, reWriteBatchedInserts=true in the URL;
- W2: mini-batch (1 s / 5,000 rows) with two-phase (local-global) aggregation;
- W3: event time rt = TO_TIMESTAMP_LTZ(ts, 3), WATERMARK FOR rt AS rt (each partition's ts is
  non-decreasing in backlog mode), TUMBLE(rt, 1 s) window TVF -> append.
"""

import argparse
import os

from pyflink.table import EnvironmentSettings, TableEnvironment

SOURCE = """
CREATE TABLE src (
  event_id BIGINT, `key` STRING, ts BIGINT, `type` STRING, amount BIGINT, qty INT, tag STRING,
  rt AS TO_TIMESTAMP_LTZ(ts, 3),
  WATERMARK FOR rt AS rt
) WITH (
  'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{brokers}',
  'properties.group.id' = '{group}', 'scan.startup.mode' = 'earliest-offset',
  'properties.fetch.max.bytes' = '52428800', 'properties.max.partition.fetch.bytes' = '4194304',
  'format' = 'json', 'json.fail-on-missing-field' = 'true'
)"""

SINK_OPTS = """
  'connector' = 'jdbc', 'url' = '{url}', 'table-name' = '{table}',
  'username' = '{user}', 'password' = '{password}',
  'sink.buffer-flush.max-rows' = '5000', 'sink.buffer-flush.interval' = '1s',
  'sink.max-retries' = '3'"""

SINKS = {
    "W1": ("w1_events", "event_id BIGINT, `key` STRING, ts BIGINT, `type` STRING, "
                        "amount BIGINT, qty INT, `value` BIGINT"),
    "W2": ("w2_totals", "`key` STRING, cnt BIGINT, total BIGINT, PRIMARY KEY (`key`) NOT ENFORCED"),
    "W3": ("w3_windows", "`key` STRING, window_start BIGINT, cnt BIGINT, total BIGINT"),
}

INSERTS = {
    "W1": """INSERT INTO sink SELECT event_id, `key`, ts, `type`, amount, qty, amount * qty
             FROM src WHERE `type` <> 'view'""",
    "W2": "INSERT INTO sink SELECT `key`, COUNT(*), SUM(amount) FROM src GROUP BY `key`",
    # every ts of a 1 s window shares ts - ts % 1000, so MIN(ts) gives window_start in epoch ms
    "W3": """INSERT INTO sink SELECT `key`, MIN(ts) - MIN(ts) % 1000, COUNT(*), SUM(amount)
             FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(rt), INTERVAL '1' SECOND))
             GROUP BY `key`, window_start, window_end""",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", choices=sorted(INSERTS), required=True)
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--jdbc-url", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--parallelism", type=int, default=os.cpu_count())
    ap.add_argument("--jars", required=True, help="';'-separated file:// URLs")
    a = ap.parse_args()

    t = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t.get_config()
    for k, v in {
        "pipeline.jars": a.jars,
        "parallelism.default": str(a.parallelism),
        "execution.checkpointing.interval": "10s",
        "execution.checkpointing.mode": "AT_LEAST_ONCE",
        # On disk: the default JobManager storage caps state at 5 MiB, and W3's windows
        # outgrow it; a failed checkpoint fails the job, whose replay then duplicates
        # W3's appended windows.
        "state.checkpoint-storage": "filesystem",
        "state.checkpoints.dir": "file://" + os.path.join(
            os.environ.get("TIDEMILL_PEER_TMP", "/tmp"), "checkpoints", a.group
        ),
        "table.local-time-zone": "UTC",
        "pipeline.name": f"tidemill-peer-{a.workload}",
    }.items():
        conf.set(k, v)
    if a.workload == "W2":
        conf.set("table.exec.mini-batch.enabled", "true")
        conf.set("table.exec.mini-batch.allow-latency", "1s")
        conf.set("table.exec.mini-batch.size", "5000")
        conf.set("table.optimizer.agg-phase-strategy", "TWO_PHASE")

    t.execute_sql(SOURCE.format(topic=a.topic, brokers=a.brokers, group=a.group))
    table, cols = SINKS[a.workload]
    opts = SINK_OPTS.format(url=a.jdbc_url, table=table, user=a.user, password=a.password)
    t.execute_sql(f"CREATE TABLE sink ({cols}) WITH ({opts})")
    t.execute_sql(INSERTS[a.workload]).wait()


if __name__ == "__main__":
    main()
