//! Shared test bed helpers: real Kafka and real databases on 127.0.0.1, as
//! started by `make services-up`. Every test makes its own topic, group and
//! database, so tests run in parallel.
#![allow(dead_code)]

pub mod db;
pub mod kafka;
pub mod process;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
session_timeout = "6s"

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
        brokers = kafka::brokers()
    )
}
