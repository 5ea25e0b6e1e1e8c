//! Shared test bed helpers: real Kafka and real databases on 127.0.0.1, as
//! started by `make services-up`. Every test makes its own topic, group and
//! database, so tests run in parallel.
#![allow(dead_code)]

/// Runs an `async fn scenario(kind: Kind)` once per backend, as
/// `scenario::postgres`, `scenario::mariadb` and `scenario::sqlite`.
#[macro_export]
macro_rules! per_backend {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario(Kind::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mariadb() {
                super::$scenario(Kind::MariaDb).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(Kind::Sqlite).await
            }
        }
    )*};
}

pub mod connect;
pub mod db;
pub mod events;
pub mod http;
pub mod kafka;
pub mod otlp;
pub mod outage;
pub mod private_kafka;
pub mod private_mariadb;
pub mod private_postgres;
pub mod process;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidemill::observe::stats::Stats;
use tidemill::pipeline::{Pipeline, PipelineError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A name no other test (or earlier run) uses: `prefix_<pid>_<n>_<random>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..1_000_000)
    )
}

/// A file of the test CA and certificates made by `make services-up`
/// (scripts/lib/tls.sh), in `$TIDEMILL_TEST_TLS_DIR` (default /tmp/tidemill-test-tls).
pub fn tls_file(name: &str) -> String {
    let dir = std::env::var("TIDEMILL_TEST_TLS_DIR")
        .unwrap_or_else(|_| "/tmp/tidemill-test-tls".to_string());
    let path = format!("{dir}/{name}");
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} missing: run `make services-up`"
    );
    path
}

/// Polls `condition` every 50 ms until it holds; panics with `what` after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// As [`wait_for`], but a timeout shows `diagnose()` (e.g. a child process's
/// log), so a failure says what the process was doing.
pub async fn wait_for_showing<F, Fut>(
    what: &str,
    timeout: Duration,
    diagnose: &dyn Fn() -> String,
    mut condition: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            diagnose()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a member's writer is held up by a [`db::TableLock`] on `table`:
/// the database shows its insert waiting for the lock (PostgreSQL, MariaDB),
/// or, on SQLite, which shows no waiters, the member (health listener on
/// `port`) has retried the busy file.
pub async fn writer_blocked(db: &db::TestDb, table: &str, port: u16, pipeline: &str) -> bool {
    match db::lock_waiters(db, table).await {
        Some(waiting) => waiting >= 1,
        None => http::db_retries(port, pipeline).await > 0,
    }
}

/// A member's health listener: a free port and the environment that sets it.
pub fn health_port() -> (u16, String) {
    let port = http::free_port();
    (port, format!("127.0.0.1:{port}"))
}

/// `[telemetry]`/`[shutdown]` plus one pipeline named `p`, for tests.
pub fn pipeline_toml(topic: &str, group: &str, url: &str, table: &str, sink_extra: &str) -> String {
    format!(
        r#"
[shutdown]
grace = "10s"

[pipelines.p]
topics = ["{topic}"]
group_id = "{group}"

[pipelines.p.kafka]
brokers = "{brokers}"
{group_lines}

[pipelines.p.sink]
url = "{url}"
table = "{table}"
retry_initial = "50ms"
retry_max = "1s"
{sink_extra}

[pipelines.p.batch]
max_rows = 500
max_linger = "50ms"
"#,
        brokers = kafka::brokers(),
        group_lines = group_settings()
    )
}

/// The consumer-group lines of a test pipeline's `[kafka]` table: a 6 s
/// session timeout on the classic protocol, or — with
/// `TIDEMILL_TEST_GROUP_PROTOCOL=consumer` (`make test` runs the rebalance,
/// zombie and crash suites that way too) — KIP-848's protocol, whose 6 s
/// session timeout the test bed's broker sets.
pub fn group_settings() -> &'static str {
    match std::env::var("TIDEMILL_TEST_GROUP_PROTOCOL").as_deref() {
        Ok("consumer") => "group_protocol = \"consumer\"",
        Ok("classic") | Err(_) => "session_timeout = \"6s\"",
        Ok(other) => panic!("TIDEMILL_TEST_GROUP_PROTOCOL={other}: use classic or consumer"),
    }
}

/// A pipeline running in this process.
pub struct Running {
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<Result<(), PipelineError>>,
    pub stats: Arc<Stats>,
}

impl Running {
    pub async fn start(toml: &str) -> Self {
        Self::start_with(toml, tidemill::state::Registry::default()).await
    }

    /// With custom keyed operators registered.
    pub async fn start_with(toml: &str, registry: tidemill::state::Registry) -> Self {
        let settings = tidemill::check::from_toml(toml).expect("valid test config");
        let cfg = &settings.pipelines["p"];
        let pipeline = Pipeline::prepare_with("p", cfg, Arc::new(registry))
            .await
            .expect("pipeline prepares");
        let stats = Arc::clone(&pipeline.stats);
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(pipeline.run(shutdown.clone(), Duration::from_secs(10)));
        Self {
            shutdown,
            handle,
            stats,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle
            .await
            .expect("pipeline task")
            .expect("pipeline stops cleanly");
    }
}

/// Whether the group committed every partition up to its high watermark.
pub async fn all_committed(group: &str, topic: &str, partitions: i32) -> bool {
    let (group, topic) = (group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        kafka::committed(&group, &topic, partitions) == kafka::high_watermarks(&topic, partitions)
    })
    .await
    .expect("offset check")
}
