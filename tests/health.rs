//! Health and metrics over HTTP: `/metrics` agrees with what was loaded, and
//! `/readyz` turns 503 while the database is away and 200 when it is back.

mod common;

use common::db::{PrivatePostgres, TestDb};
use common::kafka::{self, TestProducer};
use common::process::Tidemill;
use common::{pipeline_toml, unique, wait_for};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET `path`; returns (status code, body), or (0, "") when nothing answers.
async fn get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    if s.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text).await;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn metric(body: &str, name: &str) -> Option<i64> {
    body.lines()
        .find(|l| l.starts_with(&format!("{name}{{pipeline=\"p\"}}")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
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
    assert!(
        metric(&body, "tidemill_db_retries_total").unwrap_or(0) > 0,
        "{body}"
    );
    assert!(process.terminate(), "{}", process.log_text());
}
