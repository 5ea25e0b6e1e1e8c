//! `tidemill demo`: the main job on an embedded default, with nothing to install.
//!
//! An in-process Kafka (librdkafka's mock cluster) is fed with generated click
//! events; a pipeline with a jq transform keeps the non-`view` events and
//! upserts them into a SQLite file. Progress is printed while it runs, and a
//! summary — checked against the generator's own count and sum — at the end.

use crate::observe::stats::Stats;
use crate::pipeline::Pipeline;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "clicks";
const PARTITIONS: i32 = 4;
const KINDS: [&str; 4] = ["view", "click", "purchase", "refund"];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("mock kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("demo database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("demo database: {0}")]
    Sink(#[from] crate::sink::SinkError),
    #[error("demo config: {0}")]
    Config(#[from] Box<crate::config::ConfigError>),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error("demo file: {0}")]
    Io(#[from] std::io::Error),
    #[error("demo result is wrong: {0}")]
    Mismatch(String),
}

/// What the generator produced that the table must end up holding.
#[derive(Debug, Default, Clone, Copy)]
struct Expected {
    rows: u64,
    amount_cents: i64,
}

/// Runs the demo with `records` generated events; the database goes to `db_path`.
pub async fn run(records: u64, db_path: &Path) -> Result<(), DemoError> {
    let started = Instant::now();
    let cluster = MockCluster::new(1)?;
    cluster.create_topic(TOPIC, PARTITIONS, 1)?;
    let brokers = cluster.bootstrap_servers();
    let url = prepare_database(db_path).await?;
    println!(
        "demo: in-process Kafka at {brokers}, {PARTITIONS} partitions; SQLite at {}",
        db_path.display()
    );

    let expected = produce(&brokers, records)?;
    println!(
        "demo: produced {records} events; the pipeline keeps the {} that are not views",
        expected.rows
    );

    let settings = crate::check::from_toml(&demo_config(&brokers, &url)).map_err(Box::new)?;
    let (name, cfg) = settings
        .pipelines
        .iter()
        .next()
        .expect("the demo config declares one pipeline");
    let pipeline = Pipeline::prepare(name, cfg).await?;
    let stats = Arc::clone(&pipeline.stats);
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(shutdown.clone(), Duration::from_secs(10)));
    let load_started = Instant::now();
    report_progress(&stats, records, &shutdown).await;
    run.await
        .map_err(|e| DemoError::Mismatch(format!("pipeline task: {e}")))??;
    let elapsed = load_started.elapsed();
    summarise(&url, &stats, expected, records, elapsed, started.elapsed()).await
}

async fn prepare_database(db_path: &Path) -> Result<String, DemoError> {
    if let Some(dir) = db_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", db_path.display());
        if Path::new(&file).exists() {
            std::fs::remove_file(&file)?;
        }
    }
    let url = format!("sqlite://{}", db_path.display());
    let pool = crate::db::sqlite::connect(&url).await?;
    sqlx::query(
        "CREATE TABLE events (event_id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, \
         kind TEXT NOT NULL, amount_cents INTEGER NOT NULL, at_ms INTEGER)",
    )
    .execute(&pool)
    .await?;
    pool.close().await;
    Ok(url)
}

fn produce(brokers: &str, records: u64) -> Result<Expected, DemoError> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()?;
    let mut expected = Expected::default();
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..records {
        let kind = KINDS[rng.usize(..KINDS.len())];
        let amount_cents = rng.i64(100..100_000);
        if kind != "view" {
            expected.rows += 1;
            expected.amount_cents += amount_cents;
        }
        let user = format!("u{}", rng.u32(..1000));
        let value = format!(
            r#"{{"event_id":{i},"user":"{user}","type":"{kind}","amount":{}.{:02},"at_ms":{}}}"#,
            amount_cents / 100,
            amount_cents % 100,
            1_700_000_000_000_i64 + i as i64
        );
        let mut record = BaseRecord::to(TOPIC).key(&user).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(expected)
}

fn demo_config(brokers: &str, url: &str) -> String {
    format!(
        r#"
[pipelines.clicks]
topics = ["{TOPIC}"]
group_id = "tidemill-demo"

[pipelines.clicks.kafka]
brokers = "{brokers}"

[[pipelines.clicks.transforms]]
type = "jq"
expr = 'select(.type != "view") | {{event_id, user_id: .user, kind: .type, amount_cents: (.amount * 100 | round), at_ms}}'

[pipelines.clicks.sink]
url = "{url}"
table = "events"
mode = "upsert"
key_columns = ["event_id"]

[pipelines.clicks.batch]
max_rows = 5000
max_linger = "50ms"
"#
    )
}

async fn report_progress(stats: &Stats, records: u64, shutdown: &CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let done = Stats::get(&stats.records_done);
        println!(
            "demo: consumed {:>8}  loaded rows {:>8}  committed records {:>8}/{records}",
            Stats::get(&stats.records_in),
            Stats::get(&stats.rows_loaded),
            done
        );
        if done >= records {
            shutdown.cancel();
            return;
        }
    }
}

async fn summarise(
    url: &str,
    stats: &Stats,
    expected: Expected,
    records: u64,
    load: Duration,
    total: Duration,
) -> Result<(), DemoError> {
    let pool = crate::db::sqlite::connect(url).await?;
    let (rows, cents): (i64, i64) =
        sqlx::query_as("SELECT count(*), coalesce(sum(amount_cents), 0) FROM events")
            .fetch_one(&pool)
            .await?;
    pool.close().await;
    println!("\ndemo summary");
    println!("  events produced       {records}");
    println!(
        "  rows in table         {rows} (expected {})",
        expected.rows
    );
    println!(
        "  sum(amount_cents)     {cents} (expected {})",
        expected.amount_cents
    );
    println!("  batches               {}", Stats::get(&stats.batches));
    println!(
        "  load time             {:.2}s ({:.0} records/s), total {:.2}s",
        load.as_secs_f64(),
        records as f64 / load.as_secs_f64(),
        total.as_secs_f64()
    );
    if rows as u64 != expected.rows || cents != expected.amount_cents {
        return Err(DemoError::Mismatch(format!(
            "table has {rows} rows / {cents} cents, expected {} / {}",
            expected.rows, expected.amount_cents
        )));
    }
    println!("  result                exact: every kept event loaded once, offsets committed");
    Ok(())
}
