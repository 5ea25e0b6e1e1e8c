//! PostgreSQL side: one database per run, the workload tables, binary COPY
//! encoding of W1 rows, progress queries and the verification of each
//! workload's output against the generator's expected results.

use crate::gen::{Expected, TYPES};
use anyhow::Context as _;
use sqlx::{Connection as _, PgConnection, Row as _};

pub const PG: &str = "postgres://tidemill:tidemill@127.0.0.1:5432";

pub fn url(db: &str) -> String {
    format!("{PG}/{db}")
}

pub async fn connect(db: &str) -> anyhow::Result<PgConnection> {
    PgConnection::connect(&url(db))
        .await
        .with_context(|| format!("connecting to database {db}"))
}

/// Creates database `db` with the tables of every workload.
pub async fn create_database(db: &str) -> anyhow::Result<()> {
    let mut admin = connect("postgres").await?;
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await?;
    Ok(())
}

pub async fn create_tables(db: &str) -> anyhow::Result<()> {
    let mut c = connect(db).await?;
    for ddl in [
        "CREATE TABLE w1_events (event_id bigint, key text, ts bigint, type text, amount bigint, qty int, value bigint)",
        "CREATE TABLE w2_totals (key text PRIMARY KEY, cnt bigint, total bigint)",
        "CREATE TABLE w2_event_totals (event_id bigint PRIMARY KEY, cnt bigint, total bigint)",
        "CREATE TABLE w3_windows (key text, window_start bigint, window_end bigint, cnt bigint, total bigint)",
    ] {
        sqlx::query(ddl).execute(&mut c).await?;
    }
    Ok(())
}

pub async fn drop_database(db: &str) -> anyhow::Result<()> {
    let mut admin = connect("postgres").await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}

/// Settles the machine before a measured phase, so that the phase does not
/// pay for work the phases before it left behind, whatever ran before it:
/// `VACUUM` in each of `dbs` (the run's databases: their tables' inserts
/// would otherwise start autovacuum — a full read of a 20M-row table after
/// the rate steps — during a later phase, as pgbench also vacuums before it
/// runs), a PostgreSQL `CHECKPOINT` (dirty shared buffers), then `sync` (the
/// page cache, Kafka's log segments included: without it the kernel wrote
/// back ~0.8 GB of the previous step's dirty pages in the middle of the
/// latency window, and every WAL fsync queued behind them). Returns the
/// seconds it took.
pub async fn settle(dbs: &[String]) -> anyhow::Result<f64> {
    let start = std::time::Instant::now();
    for db in dbs {
        let mut c = connect(db).await?;
        sqlx::query("VACUUM")
            .execute(&mut c)
            .await
            .with_context(|| format!("VACUUM in {db} before a measured phase"))?;
    }
    let mut admin = connect("postgres").await?;
    sqlx::query("CHECKPOINT")
        .execute(&mut admin)
        .await
        .context("CHECKPOINT before a measured phase")?;
    let status = tokio::task::spawn_blocking(|| std::process::Command::new("sync").status())
        .await?
        .context("running sync(1)")?;
    anyhow::ensure!(status.success(), "sync(1) failed: {status}");
    Ok(start.elapsed().as_secs_f64())
}

/// Records committed by an exactly-once pipeline: the sum of its stored next
/// offsets (topics start at offset 0). 0 before the table exists.
pub async fn committed(c: &mut PgConnection, pipeline: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT coalesce(sum(greatest(next_offset, 0)), 0)::bigint FROM tidemill_offsets WHERE pipeline = $1",
    )
    .bind(pipeline)
    .fetch_one(c)
    .await
    .unwrap_or(0)
}

/// Per-partition next offsets of an exactly-once pipeline (-1: claimed, none yet).
pub async fn next_offsets(c: &mut PgConnection, pipeline: &str) -> Vec<(i32, i64)> {
    sqlx::query("SELECT partition_id, next_offset FROM tidemill_offsets WHERE pipeline = $1")
        .bind(pipeline)
        .fetch_all(c)
        .await
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .unwrap_or_default()
}

/// The PGCOPY binary header (signature, flags, no extension).
pub fn copy_header(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
}

pub fn copy_trailer(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i16).to_be_bytes());
}

/// One W1 row in binary COPY format.
pub struct W1Row<'a> {
    pub event_id: i64,
    pub key: &'a str,
    pub ts: i64,
    pub kind: &'a str,
    pub amount: i64,
    pub qty: i32,
}

impl W1Row<'_> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&7i16.to_be_bytes());
        let i8 = |out: &mut Vec<u8>, v: i64| {
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        };
        let text = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&i32::try_from(s.len()).expect("short").to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        i8(out, self.event_id);
        text(out, self.key);
        i8(out, self.ts);
        text(out, self.kind);
        i8(out, self.amount);
        out.extend_from_slice(&4i32.to_be_bytes());
        out.extend_from_slice(&self.qty.to_be_bytes());
        i8(out, self.amount * i64::from(self.qty));
    }
}

pub const W1_COPY: &str =
    "COPY w1_events (event_id, key, ts, type, amount, qty, value) FROM STDIN (FORMAT binary)";

/// Runs one binary COPY of an already-encoded buffer (its own transaction).
pub async fn copy_in(c: &mut PgConnection, buf: &[u8]) -> anyhow::Result<u64> {
    let mut copy = c.copy_in_raw(W1_COPY).await?;
    copy.send(buf).await?;
    Ok(copy.finish().await?)
}

/// Whether `kind` survives W1's filter.
pub fn w1_keeps(kind: &str) -> bool {
    kind != TYPES[0]
}

/// A verification outcome: `ok` only when every check matched.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub ok: bool,
    pub detail: String,
}

pub async fn verify_w1(c: &mut PgConnection, exp: &Expected) -> anyhow::Result<Verdict> {
    let r = sqlx::query("SELECT count(*), coalesce(sum(value), 0)::bigint FROM w1_events")
        .fetch_one(c)
        .await?;
    let (rows, sum): (i64, i64) = (r.get(0), r.get(1));
    let want = (i64::try_from(exp.w1_rows)?, exp.w1_value_sum);
    Ok(Verdict {
        ok: (rows, sum) == want,
        detail: format!(
            "count {rows} (want {}), sum(value) {sum} (want {})",
            want.0, want.1
        ),
    })
}

/// W2 over `table` (keyed by `key` or by `event_id`): one row per distinct
/// key, cnt summing to N, total to sum(amount).
pub async fn verify_w2(
    c: &mut PgConnection,
    table: &str,
    exp: &Expected,
    keys: u64,
) -> anyhow::Result<Verdict> {
    let q = format!(
        "SELECT count(*), coalesce(sum(cnt), 0)::bigint, coalesce(sum(total), 0)::bigint FROM {table}"
    );
    let r = sqlx::query(&q).fetch_one(c).await?;
    let got: (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
    let want = (
        i64::try_from(keys)?,
        i64::try_from(exp.records)?,
        exp.amount_sum,
    );
    Ok(Verdict {
        ok: got == want,
        detail: format!("(rows, sum cnt, sum total) = {got:?}, want {want:?}"),
    })
}

/// W3: every emitted window equals the expected one, no duplicates; reports
/// how many of the expected windows were closed.
pub async fn verify_w3(c: &mut PgConnection, exp: &Expected) -> anyhow::Result<Verdict> {
    let windows = exp
        .windows
        .as_ref()
        .context("W3 verification needs the expected windows")?;
    let rows = sqlx::query("SELECT key, window_start, cnt, total FROM w3_windows")
        .fetch_all(c)
        .await?;
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let (mut wrong, mut dups) = (0u64, 0u64);
    for r in &rows {
        let key: String = r.get(0);
        let ws: i64 = r.get(1);
        let k: u32 = key.trim_start_matches('k').parse().unwrap_or(u32::MAX);
        if !seen.insert((k, ws)) {
            dups += 1;
        }
        if windows.get(&(k, ws)) != Some(&(r.get::<i64, _>(2), r.get::<i64, _>(3))) {
            wrong += 1;
        }
    }
    let n = i64::try_from(rows.len())?;
    Ok(Verdict {
        ok: wrong == 0 && dups == 0 && n > 0,
        detail: format!(
            "{n} of {} expected windows closed ({:.2}%), {wrong} wrong, {dups} duplicates",
            windows.len(),
            100.0 * n as f64 / windows.len().max(1) as f64
        ),
    })
}
