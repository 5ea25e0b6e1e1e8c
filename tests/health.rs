//! Health and metrics over HTTP: `/metrics` agrees with what was loaded — per
//! pipeline and per partition, with an end-to-end latency observation per
//! record and no lag left once caught up — and `/readyz` turns 503 (`/status`
//! naming the last database error) while the
//! database is away and 200 when it is back.

mod common;

use common::db::TestDb;
use common::http::{self, get, series};
use common::kafka::{self, TestProducer};
use common::private_postgres::PrivatePostgres;
use common::process::Tidemill;
use common::{pipeline_toml, unique, wait_for};
use std::time::Duration;

fn metric(body: &str, name: &str) -> Option<i64> {
    http::metric(body, name, "p")
}

/// A per-partition series of pipeline `p`.
fn per_partition(body: &str, name: &str, topic: &str, partition: i32) -> Option<i64> {
    series(
        body,
        &format!("{name}{{pipeline=\"p\",topic=\"{topic}\",partition=\"{partition}\"}}"),
    )
}

/// The sum of every series of `name` (all label sets) for pipeline `p`.
fn total(body: &str, name: &str) -> i64 {
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{pipeline=\"p\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .sum()
}

/// A float series of pipeline `p`, e.g. a histogram's `_sum`.
fn float(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// `tidemill_stage_seconds_{what}` of one stage of pipeline `p`.
fn stage(body: &str, what: &str, stage: &str) -> Option<f64> {
    float(
        body,
        &format!("tidemill_stage_seconds_{what}{{pipeline=\"p\",stage=\"{stage}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_table_and_readiness_follows_the_database() {
    let (topic, group) = (unique("health"), unique("g"));
    kafka::create_topic(&topic, 2).await;
    let server = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .expect("private postgres");
    let db = TestDb::postgres_at(server.url()).await;
    db.exec("CREATE TABLE t (id BIGINT NOT NULL)").await;
    let port = http::free_port();
    let toml = format!(
        "[health]\nlisten = \"127.0.0.1:{port}\"\n{}",
        pipeline_toml(&topic, &group, db.url(), "t", "")
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("tidemill.toml");
    std::fs::write(&config, toml).expect("config");
    let producer = TestProducer::new(&topic);
    let send = |range: std::ops::Range<i64>| {
        for i in range {
            producer.send(Some(&i.to_string()), Some(&format!(r#"{{"id":{i}}}"#)));
        }
        producer.flush();
    };
    send(0..500);
    let mut process = Tidemill::start(&config, "health");

    wait_for("ready", Duration::from_secs(60), || async {
        get(port, "/readyz").await.0 == 200
    })
    .await;
    wait_for("rows loaded", Duration::from_secs(60), || async {
        db.try_scalar("SELECT count(*) FROM t").await == Some(500)
    })
    .await;
    let (status, body) = get(port, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        metric(&body, "tidemill_rows_loaded_total"),
        Some(500),
        "{body}"
    );
    assert_eq!(
        metric(&body, "tidemill_records_in_total"),
        Some(500),
        "{body}"
    );
    assert_eq!(
        metric(&body, "tidemill_assigned_partitions"),
        Some(2),
        "{body}"
    );
    assert!(
        body.contains("tidemill_batch_duration_seconds_count{pipeline=\"p\"}"),
        "{body}"
    );
    assert_eq!(get(port, "/livez").await.0, 200);

    server.stop();
    send(500..600);
    wait_for(
        "not ready while the database is away",
        Duration::from_secs(60),
        || async { get(port, "/readyz").await.0 == 503 },
    )
    .await;
    assert_eq!(
        get(port, "/livez").await.0,
        200,
        "alive while waiting for the database"
    );
    // The status page says why: the last database error, with its class.
    let (_, status) = get(port, "/status").await;
    let doc: serde_json::Value = serde_json::from_str(&status).expect("/status is JSON");
    let p = &doc["pipelines"][0];
    assert_eq!(p["ready"], "database unreachable; retrying", "{status}");
    // A refused socket, or PostgreSQL's "terminating connection due to
    // administrator command" (57P01) when the stop caught a statement: both
    // are the connection's.
    assert_eq!(p["db_error"]["class"], "connection", "{status}");
    assert!(
        p["db_error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{status}"
    );
    server.start_server();
    wait_for("ready again", Duration::from_secs(60), || async {
        get(port, "/readyz").await.0 == 200
    })
    .await;
    wait_for("the rest loaded", Duration::from_secs(60), || async {
        db.try_scalar("SELECT count(*) FROM t").await == Some(600)
    })
    .await;
    let (_, body) = get(port, "/metrics").await;
    assert_eq!(
        metric(&body, "tidemill_rows_loaded_total"),
        Some(600),
        "{body}"
    );
    assert!(total(&body, "tidemill_db_retries_total") > 0, "{body}");
    assert!(process.terminate(), "{}", process.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_partition_metrics_match_the_load_and_lag_drains_to_zero() {
    let (topic, group) = (unique("partmetrics"), unique("g"));
    kafka::create_topic(&topic, 2).await;
    let db = TestDb::postgres().await;
    db.exec("CREATE TABLE t (id BIGINT NOT NULL)").await;
    let port = http::free_port();
    let toml = format!(
        "[health]\nlisten = \"127.0.0.1:{port}\"\nstatistics_interval = \"200ms\"\n{}",
        pipeline_toml(&topic, &group, db.url(), "t", "")
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("tidemill.toml");
    std::fs::write(&config, toml).expect("config");
    let producer = TestProducer::new(&topic);
    let per_part = [(0, 300), (1, 120)];
    let mut id = 0;
    for (partition, n) in per_part {
        for _ in 0..n {
            producer.send_to(partition, &id.to_string(), &format!(r#"{{"id":{id}}}"#));
            id += 1;
        }
    }
    producer.flush();
    let mut process = Tidemill::start(&config, "partmetrics");
    wait_for("rows loaded", Duration::from_secs(60), || async {
        db.try_scalar("SELECT count(*) FROM t").await == Some(420)
    })
    .await;
    // Lag needs a high watermark from librdkafka's next statistics report.
    wait_for(
        "no lag on either partition",
        Duration::from_secs(30),
        || async {
            let body = get(port, "/metrics").await.1;
            per_part
                .iter()
                .all(|(p, _)| per_partition(&body, "tidemill_consumer_lag", &topic, *p) == Some(0))
        },
    )
    .await;
    let (_, body) = get(port, "/metrics").await;
    for (partition, n) in per_part {
        for name in [
            "tidemill_partition_records_in_total",
            "tidemill_partition_rows_loaded_total",
        ] {
            assert_eq!(
                per_partition(&body, name, &topic, partition),
                Some(n),
                "{name} of partition {partition}:\n{body}"
            );
        }
        assert_eq!(
            per_partition(
                &body,
                "tidemill_partition_committed_offset",
                &topic,
                partition
            ),
            Some(n)
        );
        assert_eq!(
            per_partition(
                &body,
                "tidemill_partition_dead_lettered_total",
                &topic,
                partition
            ),
            Some(0)
        );
        let fresh = per_partition(&body, "tidemill_freshness_seconds", &topic, partition);
        assert!(fresh.is_some_and(|s| (0..120).contains(&s)), "{fresh:?}");
    }
    assert_eq!(
        metric(&body, "tidemill_end_to_end_latency_seconds_count"),
        Some(420),
        "one latency observation per record:\n{body}"
    );
    assert_eq!(
        series(
            &body,
            "tidemill_end_to_end_latency_seconds_bucket{pipeline=\"p\",le=\"+Inf\"}"
        ),
        Some(420)
    );
    assert!(
        metric(&body, "tidemill_rebalances_total").unwrap_or(0) >= 1,
        "{body}"
    );
    assert!(metric(&body, "tidemill_rebalance_pause_seconds_count").unwrap_or(0) >= 1);
    assert_eq!(total(&body, "tidemill_db_retries_total"), 0);
    stages_add_up_to_the_end_to_end_latency(&body);
    // The offsets leg ends when the poll loop sends the acked offsets on.
    wait_for(
        "every record's offsets sent",
        Duration::from_secs(30),
        || async { stage(&get(port, "/metrics").await.1, "count", "offsets") == Some(420.0) },
    )
    .await;
    assert!(process.terminate(), "{}", process.log_text());
}

/// Each record passed every stage of a stateless pipeline once (none went
/// through state), and the legs it spent add up to its end-to-end latency
/// (each leg is measured to the millisecond or better).
fn stages_add_up_to_the_end_to_end_latency(body: &str) {
    let legs = ["kafka", "batching", "queue", "write", "commit"];
    for leg in legs {
        assert_eq!(stage(body, "count", leg), Some(420.0), "{leg}:\n{body}");
    }
    assert_eq!(stage(body, "count", "state"), Some(0.0));
    let sum: f64 = legs.iter().filter_map(|l| stage(body, "sum", l)).sum();
    let end_to_end = float(
        body,
        "tidemill_end_to_end_latency_seconds_sum{pipeline=\"p\"}",
    )
    .expect("end-to-end latency sum");
    assert!(
        (sum - end_to_end).abs() <= 0.01 * end_to_end + 420.0 * 0.003,
        "legs add up to {sum} s, end to end {end_to_end} s"
    );
}
