"""The peers' output tables (created before a peer starts) and the checks on them.

Tables follow /work/briefs/workloads.md exactly for both peers; every check compares the table
with the Expected summary recomputed from the topic (expected.py): W1 count, distinct event_id
and sum(value); W2 every key's cnt and total; W3 every emitted window's cnt and total, no
duplicate windows, and all windows that the data's watermark must close present.
"""

from urllib.parse import unquote, urlparse

import psycopg2

DDL = {
    "W1": "CREATE TABLE w1_events (event_id bigint, key text, ts bigint, type text, "
          "amount bigint, qty int, value bigint)",
    "W2": "CREATE TABLE w2_totals (key text PRIMARY KEY, cnt bigint, total bigint)",
    "W3": "CREATE TABLE w3_windows (key text, window_start bigint, cnt bigint, total bigint)",
}
TABLE = {"W1": "w1_events", "W2": "w2_totals", "W3": "w3_windows"}
# one cheap query per poll: (rows, progress) where progress reaches the target when complete
PROGRESS = {
    "W1": "SELECT count(*), count(*) FROM w1_events",
    "W2": "SELECT count(*), coalesce(sum(cnt), 0) FROM w2_totals",
    "W3": "SELECT count(*), count(*) FROM w3_windows",
}


def pg_params(url):
    u = urlparse(url)
    if u.scheme not in ("postgres", "postgresql") or not u.path.strip("/"):
        raise ValueError(f"--pg-url must be postgres://user:password@host:port/db, got {url}")
    return {"host": u.hostname or "127.0.0.1", "port": u.port or 5432,
            "user": unquote(u.username or ""), "password": unquote(u.password or ""),
            "dbname": u.path.strip("/")}


def connect(params):
    conn = psycopg2.connect(**params)
    conn.autocommit = True
    return conn


def create_table(conn, workload):
    with conn.cursor() as cur:
        cur.execute(DDL[workload])


def progress(conn, workload):
    with conn.cursor() as cur:
        cur.execute(PROGRESS[workload])
        rows, prog = cur.fetchone()
        return int(rows), int(prog)


def target(workload, exp):
    """The PROGRESS value that means complete (W3: the windows that must be closed)."""
    return {"W1": exp.w1_rows, "W2": exp.records, "W3": len(exp.w3_closable())}[workload]


def _one(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()


def verify_w1(conn, exp):
    rows, distinct, total = _one(
        conn, "SELECT count(*), count(DISTINCT event_id), coalesce(sum(value), 0) FROM w1_events")
    bad = _one(conn, "SELECT count(*) FROM w1_events WHERE type = 'view' OR value <> amount * qty")[0]
    ok = rows == exp.w1_rows and distinct == rows and int(total) == exp.w1_sum_value and bad == 0
    return ok, rows, (f"rows {rows}/{exp.w1_rows}, distinct event_id {distinct}, "
                      f"sum(value) {total}/{exp.w1_sum_value}, bad rows {bad}")


def verify_w2(conn, exp):
    with conn.cursor() as cur:
        cur.execute("SELECT key, cnt, total FROM w2_totals")
        got = {k: [int(c), int(t)] for k, c, t in cur}
    wrong = sum(1 for k, v in exp.w2.items() if got.get(k) != v)
    extra = len(set(got) - set(exp.w2))
    sum_cnt = sum(v[0] for v in got.values())
    sum_total = sum(v[1] for v in got.values())
    exp_total = sum(v[1] for v in exp.w2.values())
    ok = wrong == 0 and extra == 0 and sum_cnt == exp.records and sum_total == exp_total
    return ok, len(got), (f"keys {len(got)}/{len(exp.w2)}, sum(cnt) {sum_cnt}/{exp.records}, "
                          f"sum(total) {sum_total}/{exp_total}, wrong keys {wrong}, extra {extra}")


def verify_w3(conn, exp):
    with conn.cursor() as cur:
        cur.execute("SELECT key, window_start, cnt, total FROM w3_windows")
        rows = [(k, int(w), int(c), int(t)) for k, w, c, t in cur]
    seen, dups, wrong = set(), 0, 0
    for k, w, c, t in rows:
        if (k, w) in seen:
            dups += 1
        seen.add((k, w))
        if exp.w3.get((k, w)) != [c, t]:
            wrong += 1
    closable = exp.w3_closable()
    missing = len(closable - seen)
    ok = dups == 0 and wrong == 0 and missing == 0
    return ok, len(rows), (f"windows emitted {len(rows)} of {len(exp.w3)} "
                           f"({len(closable)} closable by the data's watermark), "
                           f"missing closable {missing}, wrong {wrong}, duplicates {dups}")


VERIFY = {"W1": verify_w1, "W2": verify_w2, "W3": verify_w3}
