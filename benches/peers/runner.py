"""run.sh's driver: runs one peer on one workload against a filled topic and reports one JSON line.

Order: recompute the expected results from the topic (expected.py), create the output table,
start the peer in its own session, sample its whole process tree (proctree.py) while polling the
table until the output is complete (W3: the windows the data's watermark must close are present
and the count has stopped changing, or the count stopped changing for --stall seconds), stop the
tree, verify (checks.py) and print the result as the last stdout line. Exit 0 when the run
completed (verified or not), 1 when the peer failed or timed out (reason on stderr).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import checks
import expected
from proctree import TreeSampler

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DIR = os.path.join(ROOT, "target", "bench", "peers")
JARS = ["flink-sql-connector-kafka-3.2.0-1.19.jar", "flink-connector-jdbc-3.2.0-1.19.jar",
        "postgresql-42.7.4.jar"]


def peer_command(a, pg):
    common = ["--workload", a.workload, "--brokers", a.brokers, "--topic", a.topic,
              "--group", a.group, "--user", pg["user"], "--password", pg["password"]]
    if a.peer == "flink":
        jars = [os.path.join(DIR, "jars", j) for j in JARS]
        missing = [j for j in jars if not os.path.exists(j)]
        if missing:
            raise SystemExit(f"run.sh: missing {missing}: run benches/peers/setup.sh")
        url = (f"jdbc:postgresql://{pg['host']}:{pg['port']}/{pg['dbname']}"
               "?reWriteBatchedInserts=true")
        return [os.path.join(DIR, "flink-venv", "bin", "python"),
                os.path.join(HERE, "flink_job.py"), *common, "--jdbc-url", url,
                "--parallelism", str(a.parallelism), "--jars", ";".join("file://" + j for j in jars)]
    state = os.path.join(DIR, "state", a.group)
    return [os.path.join(DIR, "quix-venv", "bin", "python"), os.path.join(HERE, "quix_job.py"),
            *common, "--host", pg["host"], "--port", str(pg["port"]), "--db", pg["dbname"],
            "--state-dir", state]


def flink_default_java_opts():
    """env.java.opts.all from PyFlink's bundled config.yaml (the --add-opens Java 17 needs);
    setting FLINK_ENV_JAVA_OPTS replaces it, so it is repeated there."""
    lib = os.path.join(DIR, "flink-venv", "lib")
    for py in sorted(os.listdir(lib)):
        conf = os.path.join(lib, py, "site-packages", "pyflink", "conf", "config.yaml")
        if os.path.exists(conf):
            with open(conf) as f:
                for line in f:
                    if "--add-opens" in line:
                        return line.split(":", 1)[1].strip()
    return ""


def peer_env(a):
    env = dict(os.environ)
    if a.peer == "flink":
        # The MiniCluster's temporary files (an unpacked RPC jar per run, ~70 MB) and the
        # job's checkpoints go to a directory of ours, emptied before each run, instead of
        # piling up in /tmp.
        tmp = os.path.join(DIR, "tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp, exist_ok=True)
        env["TIDEMILL_PEER_TMP"] = tmp
    if a.peer == "flink" and "FLINK_ENV_JAVA_OPTS" not in env:
        # PyFlink's gateway JVM (the local MiniCluster) would otherwise take 1/4 of RAM as heap
        env["FLINK_ENV_JAVA_OPTS"] = (
            f"{flink_default_java_opts()} -Xmx{a.flink_heap} -Djava.io.tmpdir={env['TIDEMILL_PEER_TMP']}"
        )
    if a.peer == "flink":  # the MiniCluster's own log, otherwise overwritten inside the venv
        env.setdefault("FLINK_LOG_DIR", os.path.join(DIR, "logs", f"flink-{a.group}"))
        os.makedirs(env["FLINK_LOG_DIR"], exist_ok=True)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def stop(proc):
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def watch(a, conn, proc, goal, sampler):
    """Polls the table; returns (first_row_t, cpu_at_first_row, done_t, outcome)."""
    t0 = time.monotonic()
    first_cpu = None
    deadline = t0 + a.timeout
    first = None
    last = (-1, -1)
    changed = t0
    while True:
        now = time.monotonic()
        if proc.poll() is not None:
            return first, first_cpu, changed, f"peer exited with status {proc.returncode}"
        if now > deadline:
            return first, first_cpu, changed, f"timed out after {a.timeout} s"
        rows, prog = checks.progress(conn, a.workload)
        if (rows, prog) != last:
            last, changed = (rows, prog), now
            if first is None and rows > 0:
                first = now
                sampler.sample()
                first_cpu = sampler.cpu_seconds()
        if first is not None:
            if a.workload in ("W1", "W2") and prog >= goal:
                return first, first_cpu, changed, "complete"
            if a.workload == "W3" and prog >= goal and now - changed >= a.settle:
                return first, first_cpu, changed, "complete"
            if now - changed >= a.stall:
                return first, first_cpu, changed, f"output stopped changing for {a.stall} s"
        time.sleep(a.poll)


def clean_quix(a):
    """Removes what the Quix run left: its changelog topics (named after the run's group, created
    by the peer itself) and its RocksDB state directory."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": a.brokers})
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"changelog__{a.group}--")]
    for topic, fut in (admin.delete_topics(mine).items() if mine else []):
        try:
            fut.result(30)
        except Exception as e:  # leftovers are harmless; say so and go on
            print(f"run.sh: could not delete {topic}: {e}", file=sys.stderr)
    shutil.rmtree(os.path.join(DIR, "state", a.group), ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(prog="run.sh")
    ap.add_argument("peer", choices=["flink", "quix"])
    ap.add_argument("workload", choices=["W1", "W2", "W3"])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--pg-url", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--parallelism", type=int,
                    default=int(os.environ.get("PEER_PARALLELISM", os.cpu_count() or 2)))
    ap.add_argument("--flink-heap", default=os.environ.get("PEER_FLINK_HEAP", "1g"))
    ap.add_argument("--timeout", type=float, default=None, help="seconds; default 300 + N/2000")
    ap.add_argument("--stall", type=float, default=60.0,
                    help="give up when the output has not changed for this long")
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--poll", type=float, default=0.25)
    a = ap.parse_args()
    a.timeout = a.timeout or 300 + a.records / 2000
    pg = checks.pg_params(a.pg_url)

    exp = expected.scan(a.brokers, a.topic, a.partitions)
    if exp.records != a.records:
        print(f"run.sh: topic {a.topic} holds {exp.records} records, --records says {a.records}",
              file=sys.stderr)
    goal = checks.target(a.workload, exp)
    if a.workload == "W3" and goal == 0:
        sys.exit(f"run.sh: the event time in {a.topic} spans less than one closed 1 s window "
                 "for some partition, so W3 has nothing to wait for: use more records "
                 "(backlog mode makes 100k records per second of event time)")
    conn = checks.connect(pg)
    checks.create_table(conn, a.workload)

    os.makedirs(os.path.join(DIR, "logs"), exist_ok=True)
    log_path = os.path.join(DIR, "logs", f"{a.peer}-{a.workload}-{a.group}.log")
    with open(log_path, "wb") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(peer_command(a, pg), stdout=log, stderr=subprocess.STDOUT,
                                env=peer_env(a), start_new_session=True)
        sampler = TreeSampler(proc.pid).start()
        try:
            first, first_cpu, done, outcome = watch(a, conn, proc, goal, sampler)
        finally:
            sampler.stop()  # final sample while the tree is still alive
            stop(proc)
    ok, rows, detail = checks.VERIFY[a.workload](conn, exp)
    if a.peer == "quix":
        clean_quix(a)
    layout = (f"parallelism {a.parallelism}" if a.peer == "flink" else
              "one process, commit_interval " + os.environ.get("PEER_QUIX_COMMIT_INTERVAL", "5") + " s")
    result = {
        "peer": a.peer, "workload": a.workload, "records": exp.records, "rows": rows,
        "startup_seconds": round(first - t0, 3) if first else None,
        "drain_seconds": round(done - first, 3) if first else None,
        "cpu_seconds": round(sampler.cpu_seconds(), 2), "peak_rss_bytes": sampler.peak_rss,
        "verified": ok and outcome == "complete",
        "detail": f"{outcome}; {detail}; cpu before the first row {first_cpu} s; "
                  f"{layout}; log {log_path}",
    }
    print(json.dumps(result), flush=True)
    if outcome != "complete" and not (a.workload == "W3" and outcome.startswith("output stopped")):
        with open(log_path, "rb") as f:
            tail = f.read()[-3000:].decode("utf-8", "replace")
        print(f"run.sh: {a.peer} {a.workload}: {outcome}\n--- peer log tail ---\n{tail}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
