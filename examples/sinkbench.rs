//! Sink throughput without Kafka: generated event rows (the shape of the
//! former `loadgen` example), prepared in batches of 5,000 (or BATCH) and written
//! through the sink, one transaction per batch.
//!
//!   cargo run --release --example sinkbench -- URL insert|upsert|update|delete[-guarded] [ROWS] [COPY_THRESHOLD] [BATCH]
//!
//! `update` upserts every row twice and times the second pass, where every key
//! conflicts. `delete` upserts every row, then times deleting them all by key
//! (tombstones with `sink.delete`), 5,000 keys per transaction. `-guarded`
//! runs `update` or `delete` with the ordering guard (`sink.order_column`):
//! each row carries a source position, the timed pass's newer than the
//! first's, and the run checks every row (or delete's marker) took it;
//! `-positioned` carries the same positions without the guard (what the
//! column alone costs).
//!
//! URL names an existing, empty database (PostgreSQL or MySQL/MariaDB); the
//! table `events` is (re)created there. Prints rows/s for the writes alone, and
//! separately the rate of the type conversion the writer applies first
//! (`sink::types`).

use serde_json::{json, Map, Value};
use sqlx::Connection;
use std::time::Instant;
use tidemill::config::SinkConfig;
use tidemill::sink::order::BatchGuard;
use tidemill::sink::types::RowTypes;
use tidemill::sink::{prepare, with_deletes, PreparedWrite, Sink};
use tidemill::state::time::now_ms;

const TYPES: [&str; 4] = ["view", "click", "purchase", "refund"];

fn rows(n: usize) -> Vec<Map<String, Value>> {
    let mut rng = fastrand::Rng::with_seed(42);
    (0..n)
        .map(|i| {
            let v = json!({
                "event_id": i, "key": format!("k{}", rng.u32(..100_000)),
                "ts": format!("2026-11-23T12:{:02}:{:02}.{:03}Z", (i / 60_000) % 60, (i / 1000) % 60, i % 1000),
                "type": TYPES[rng.usize(..TYPES.len())],
                "amount": format!("{}.{:02}", rng.u32(..10_000), rng.u32(..100)).parse::<f64>().unwrap_or(0.0),
                "qty": rng.u32(1..20), "tag": format!("t{}", rng.u32(..1000)),
            });
            v.as_object().cloned().unwrap_or_default()
        })
        .collect()
}

async fn create_table(url: &str, guarded: bool) -> anyhow::Result<()> {
    let pos = if guarded { ", pos varchar(64)" } else { "" };
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await?;
        sqlx::query("DROP TABLE IF EXISTS events, tidemill_deleted__events")
            .execute(&mut c)
            .await?;
        sqlx::query(&format!("CREATE TABLE events (event_id bigint PRIMARY KEY, key text, ts timestamptz, type text, amount numeric(12,2), qty int, tag text{pos})"))
            .execute(&mut c)
            .await?;
    } else {
        let mut c = sqlx::MySqlConnection::connect(url).await?;
        sqlx::query("DROP TABLE IF EXISTS events, tidemill_deleted__events")
            .execute(&mut c)
            .await?;
        // MariaDB's DATETIME does not read RFC 3339's `Z`: text, as in load-1m.sh.
        sqlx::query(&format!("CREATE TABLE events (event_id bigint PRIMARY KEY, `key` text, ts varchar(32), type text, amount decimal(12,2), qty int, tag text{pos})"))
            .execute(&mut c)
            .await?;
    }
    Ok(())
}

/// Seconds spent converting (the writer's type mapping), then writing.
async fn bench(
    mut sink: Box<dyn Sink>,
    cfg: &SinkConfig,
    rows: &[Map<String, Value>],
    delete: bool,
    batch_rows: usize,
) -> anyhow::Result<(f64, f64)> {
    let (mode, keys) = (cfg.mode, vec!["event_id".to_string()]);
    let order = cfg.order_column.as_deref();
    let types = RowTypes::new(sink.schema(), cfg, sink.dialect().target());
    let mut rows = rows.to_vec();
    let converting = Instant::now();
    for row in &mut rows {
        types.convert_row(row).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let converted = converting.elapsed().as_secs_f64();
    let started = Instant::now();
    for batch in rows.chunks(batch_rows) {
        let ids: Vec<Map<String, Value>>;
        let prepared = if delete {
            ids = batch
                .iter()
                .map(|r| {
                    r.iter()
                        .filter(|(k, _)| *k == "event_id" || Some(k.as_str()) == order)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .collect();
            PreparedWrite::default()
        } else {
            ids = Vec::new();
            prepare(sink.schema(), mode, &keys, batch)?
        };
        let guard = BatchGuard::new(&keys, order, &ids, now_ms());
        let written: &[Map<String, Value>] = if delete { &[] } else { batch };
        let prepared = guard.attach(
            with_deletes(guard.delete_columns(), prepared, &ids),
            written,
            &[],
        );
        let deleted = sink.write(&prepared, None, None).await?.deleted;
        anyhow::ensure!(
            !delete || deleted == batch.len() as u64,
            "deleted {deleted} of {}",
            batch.len()
        );
    }
    Ok((converted, started.elapsed().as_secs_f64()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).ok_or_else(|| {
        anyhow::anyhow!("usage: sinkbench URL MODE [ROWS] [COPY_THRESHOLD] [BATCH]")
    })?;
    let arg = args.get(2).map_or("insert", String::as_str);
    let guarded = arg.ends_with("-guarded");
    // The rows carry positions, without the guard: what the column costs.
    let positioned = guarded || arg.ends_with("-positioned");
    let arg = arg
        .trim_end_matches("-guarded")
        .trim_end_matches("-positioned");
    anyhow::ensure!(
        !positioned || matches!(arg, "update" | "delete"),
        "-guarded and -positioned go with update or delete"
    );
    let mode = if matches!(arg, "upsert" | "update" | "delete") {
        "upsert"
    } else {
        "insert"
    };
    let n: usize = args.get(3).map_or(Ok(1_000_000), |s| s.parse())?;
    let copy: usize = args.get(4).map_or(Ok(1000), |s| s.parse())?;
    let batch: usize = args.get(5).map_or(Ok(5000), |s| s.parse())?;
    anyhow::ensure!(batch > 0, "BATCH must be at least 1");
    create_table(url, positioned).await?;
    let (format, order) = if guarded {
        ("format = \"debezium\"\n", "order_column = \"pos\"\n")
    } else {
        ("", "")
    };
    let toml = format!(
        "[pipelines.b]\ntopics = [\"x\"]\n{format}[pipelines.b.kafka]\nbrokers = \"x\"\n[pipelines.b.sink]\nurl = \"{url}\"\ntable = \"events\"\nmode = \"{mode}\"\nkey_columns = [\"event_id\"]\ncopy_threshold = {copy}\n{order}"
    );
    let cfg = tidemill::check::from_toml(&toml)?.pipelines["b"]
        .sink
        .clone();
    let mut rows = rows(n);
    let passes = if matches!(arg, "update" | "delete") {
        2
    } else {
        1
    };
    let (mut conv, mut secs) = (0.0, 0.0);
    for pass in 0..passes {
        let delete = arg == "delete" && pass == 1;
        if positioned {
            // Each pass's changes newer than the one before's.
            for (i, row) in rows.iter_mut().enumerate() {
                row.insert("pos".into(), Value::String(format!("{:040}", pass * n + i)));
            }
        }
        (conv, secs) = bench(tidemill::db::open(&cfg).await?, &cfg, &rows, delete, batch).await?;
    }
    if guarded {
        verify_guarded(url, arg, n).await?;
    }
    println!(
        "sinkbench: mode={arg}{} copy_threshold={copy} rows={n} batch={batch} in {secs:.2}s = {:.0} rows/s; type conversion {conv:.2}s = {:.0} rows/s",
        match (guarded, positioned) {
            (true, _) => "-guarded",
            (false, true) => "-positioned",
            _ => "",
        },
        n as f64 / secs,
        n as f64 / conv
    );
    Ok(())
}

/// The guarded run's output: every row holds the timed pass's position
/// (`update`), or every delete left its marker and no row is left (`delete`).
async fn verify_guarded(url: &str, arg: &str, n: usize) -> anyhow::Result<()> {
    let newer = format!("{:040}", n);
    let sql = if arg == "update" {
        format!("SELECT CAST(count(*) AS SIGNED) FROM events WHERE pos >= '{newer}'")
    } else {
        format!(
            "SELECT CAST(count(*) AS SIGNED) FROM tidemill_deleted__events WHERE pos >= '{newer}'"
        )
    };
    let sql = if url.starts_with("postgres") {
        sql.replace("SIGNED", "BIGINT")
    } else {
        sql
    };
    let count: i64 = if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await?;
        sqlx::query_scalar(&sql).fetch_one(&mut c).await?
    } else {
        let mut c = sqlx::MySqlConnection::connect(url).await?;
        sqlx::query_scalar(&sql).fetch_one(&mut c).await?
    };
    anyhow::ensure!(
        count == n as i64,
        "{count} of {n} rows took the newer change"
    );
    Ok(())
}
